#pragma once
// --device and --compute-dtype on the commands that run a model: where it
// runs and with what arithmetic, decided once when it loads.
//   --device cpu (default) | cuda | cuda:N
//   --compute-dtype  CPU: fp32 or bf16, the arithmetic of a quantized
//                    int8-tensor / nf4 / fp4 checkpoint (overriding its
//                    quantization_config), or of a dense (fp32 / fp16 /
//                    bf16) checkpoint's block projections, whose weights are
//                    then rounded to bf16 once (backend/cpu/bf16_linear.h);
//                    CUDA: fp32 (default; the exactness
//                    path), fp16 or bf16 for every layer (tensor cores, fp32
//                    sums), default the checkpoint's own compute dtype.
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "io/checkpoint.h"
#include "layers/placement.h"
#include "model/gpt2.h"

namespace gpt2q::cli {

struct DeviceArgs {
  std::string device = "cpu";
  std::optional<std::string> compute_dtype;
};

void add_device_options(CLI::App* cmd, DeviceArgs& args);

// The placement for `ck` (its quantization_config gives the default compute
// dtype). For CUDA this checks that the build has the backend and that a
// device is usable, and selects it; each failure is one Error naming
// --device and why.
Placement resolve_placement(const DeviceArgs& args, const Checkpoint& ck);

// The device alone (checked and selected as resolve_placement does) and the
// compute dtype when --compute-dtype was given: for commands that place
// several checkpoints (compare, pipeline), where each variant brings its own
// CPU arithmetic, so --compute-dtype needs --device cuda.
struct DeviceChoice {
  Device device = Device::CPU;
  std::optional<DType> compute;
  std::string description = "CPU";  // the device line of reports
};
DeviceChoice resolve_device(const DeviceArgs& args);

// Loads `dir` on the placement the arguments ask for (a CPU --compute-dtype
// is written into the checkpoint's quantization_config first, as before).
std::unique_ptr<GPT2Model> load_model(const std::string& dir, const DeviceArgs& args);

// "cpu", or the GPU's name, compute capability, driver and CUDA versions:
// for reports and --json output.
nlohmann::json device_json(const Placement& placement);
std::string device_line(const Placement& placement);

}  // namespace gpt2q::cli
