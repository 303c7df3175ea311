#include "cli/device_args.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/device_memory.h"
#include "core/error.h"
#include "quant/quant_config.h"
#include "quant/quantized_checkpoint.h"

#ifdef GPT2Q_CUDA
#include "backend/cuda/cuda_kernels.h"
#endif

namespace gpt2q::cli {

namespace {

DType parse_compute(const std::string& name, Device device) {
  if (name == "fp32" || name == "float32") return DType::F32;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "fp16" || name == "float16" || name == "half") {
    if (device == Device::CPU) fail("--compute-dtype fp16 needs --device cuda (the CPU has fp32 and bf16)");
    return DType::F16;
  }
  fail("--compute-dtype must be fp32, fp16 or bf16, got '{}'", name);
}

// The checkpoint's own compute dtype on a GPU: a quantized checkpoint's
// (bnb_4bit_compute_dtype or gpt2q's compute_dtype; "float16" included),
// else fp32.
DType checkpoint_compute(const Checkpoint& ck) {
  if (!ck.quantized()) return DType::F32;
  const quant::QuantizationConfig c = quant::checkpoint_quantization(ck);
  if (c.compute_dtype == "bfloat16") return DType::BF16;
  if (c.compute_dtype == "float16") return DType::F16;
  return DType::F32;
}

int parse_device_index(const std::string& device) {
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0) {
    const std::string n = device.substr(5);
    if (!n.empty() && n.size() < 4 && n.find_first_not_of("0123456789") == std::string::npos) return std::stoi(n);
  }
  fail("--device must be cpu, cuda or cuda:N, got '{}'", device);
}

}  // namespace

void add_device_options(CLI::App* cmd, DeviceArgs& a) {
  cmd->add_option("--device", a.device, "cpu (default), cuda or cuda:N");
  cmd->add_option("--compute-dtype", a.compute_dtype,
                  "CUDA: fp32 (exact), fp16 or bf16 for every layer (default: the checkpoint's). CPU: fp32 or bf16 "
                  "products from 16 rows: a quantized int8-tensor/nf4/fp4 checkpoint's (default: its "
                  "quantization_config), or a dense one's block projections (weights rounded to bf16 at load)");
}

Placement resolve_placement(const DeviceArgs& a, const Checkpoint& ck) {
  Placement p;
  if (a.device == "cpu") {
    if (a.compute_dtype) p.compute = parse_compute(*a.compute_dtype, Device::CPU);
    return p;
  }
  const int index = parse_device_index(a.device);
  if (!cuda_built()) fail("--device {}: this gpt2q was built without the CUDA backend (no nvcc at build time)", a.device);
#ifdef GPT2Q_CUDA
  std::string why;
  if (!cuda::device_available(&why)) fail("--device {}: no usable CUDA device: {}", a.device, why);
#endif
  select_cuda_device(index);
  p.device = Device::CUDA;
  p.compute = a.compute_dtype ? parse_compute(*a.compute_dtype, Device::CUDA) : checkpoint_compute(ck);
  return p;
}

DeviceChoice resolve_device(const DeviceArgs& a) {
  DeviceChoice c;
  if (a.device == "cpu") {
    if (a.compute_dtype)
      fail("--compute-dtype applies with --device cuda (on the CPU use the :bf16-compute variants)");
    return c;
  }
  Checkpoint none;  // no quantization_config: the default compute is fp32
  const Placement p = resolve_placement(a, none);
  c.device = p.device;
  if (a.compute_dtype) c.compute = p.compute;
  c.description = device_line(Placement{p.device, c.compute.value_or(DType::F32)});
  return c;
}

std::unique_ptr<GPT2Model> load_model(const std::string& dir, const DeviceArgs& a) {
  Checkpoint ck = Checkpoint::load(dir);
  const Placement p = resolve_placement(a, ck);
  // A quantized checkpoint's kernels read their arithmetic from its config;
  // a dense one's layers take it from the placement (layers/dense_linear.h).
  if (p.device == Device::CPU && a.compute_dtype && ck.quantized()) quant::set_compute_dtype(ck, p.compute);
  return GPT2Model::from_checkpoint(ck, p);
}

nlohmann::json device_json(const Placement& p) {
  nlohmann::json j = {{"device", p.device == Device::CPU ? "cpu" : "cuda"},
                      {"compute_dtype", p.describe()}};
#ifdef GPT2Q_CUDA
  if (p.device == Device::CUDA) {
    const cuda::DeviceInfo i = cuda::device_info();
    j["gpu"] = {{"name", i.name},         {"compute_capability", i.compute_capability},
                {"driver", i.driver},     {"cuda_runtime", i.runtime},
                {"multiprocessors", i.multiprocessors}, {"memory_bytes", i.memory}};
  }
#endif
  return j;
}

std::string device_line(const Placement& p) {
#ifdef GPT2Q_CUDA
  if (p.device == Device::CUDA) {
    const cuda::DeviceInfo i = cuda::device_info();
    return fmt::format("{} (sm {}, driver {}, CUDA {}), {}", i.name, i.compute_capability, i.driver, i.runtime,
                       p.describe());
  }
#endif
  return p.describe();
}

}  // namespace gpt2q::cli
