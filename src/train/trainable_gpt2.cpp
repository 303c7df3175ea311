// TrainableGPT2: parameters (from a checkpoint or HF's initialisation), their
// order and weight-decay flags, and the accessors. The pass itself is in
// train_pass.cpp.
#include "train/trainable_gpt2.h"

#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "core/device_memory.h"
#include "model/synthetic_weights.h"
#include "train/trainable_impl.h"

namespace gpt2q::train {

namespace {

bool is_layer_norm(const std::string& name) { return name.starts_with("ln_f.") || name.find(".ln_") != std::string::npos; }
bool is_bias(const std::string& name) { return name.ends_with(".bias"); }

// HF Trainer: no weight decay for biases and LayerNorm weights; every other
// weight decays (wte, wpe and the score head included).
bool decays(const std::string& name) { return !is_bias(name) && !is_layer_norm(name); }

double initializer_range(const GPT2Config& c) {
  auto it = c.raw.find("initializer_range");
  return it != c.raw.end() && it->is_number() ? it->get<double>() : 0.02;
}

// normal(0, std) for tensor `name`, element i: Box-Muller over two
// splitmix64 draws keyed by (name, seed), in double, rounded once to fp32.
// Portable: no standard-library distribution is involved.
void fill_normal(Tensor& t, const std::string& name, uint64_t seed, double std) {
  const uint64_t key = fnv1a64(name) ^ splitmix64(seed);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t j = 2 * static_cast<uint64_t>(i);
    const double u1 = static_cast<double>((splitmix64(key + j) >> 11) + 1) * 0x1p-53;  // (0, 1]
    const double u2 = static_cast<double>(splitmix64(key + j + 1) >> 11) * 0x1p-53;    // [0, 1)
    p[i] = static_cast<float>(std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
  }
}

// HF's GPT2PreTrainedModel._init_weights for one parameter.
Tensor init_value(const GPT2Config& c, const std::string& name, const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32);  // zero: biases, LayerNorm bias
  const double range = initializer_range(c);
  if (is_bias(name)) return t;
  if (is_layer_norm(name)) {
    for (float& v : t.span<float>()) v = 1.0f;
  } else if (name.ends_with("c_proj.weight")) {
    fill_normal(t, name, seed, range / std::sqrt(2.0 * static_cast<double>(c.n_layer)));
  } else {
    fill_normal(t, name, seed, range);
  }
  return t;
}

void check_config(const GPT2Config& c) {
  if (c.n_embd <= 0 || c.n_head <= 0 || c.n_embd % c.n_head != 0)
    fail("config: n_head ({}) must divide n_embd ({})", c.n_head, c.n_embd);
  if (c.n_layer < 0 || c.vocab_size <= 0 || c.n_positions <= 0 || c.inner() <= 0)
    fail("config: n_layer, vocab_size, n_positions and n_inner must be positive");
  const std::string& act = c.activation_function;
  if (act != "gelu" && act != "gelu_new" && act != "gelu_pytorch_tanh" && act != "gelu_fast")
    fail("config: activation_function \"{}\" is not supported (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu)", act);
}

// The config of the model to train: labels and pad id for a classifier.
GPT2Config task_config(GPT2Config c, Task task, int64_t num_labels) {
  check_config(c);
  if (task == Task::LM) return c;
  if (num_labels <= 0) fail("classification needs a positive number of labels, got {}", num_labels);
  if (c.num_labels() != num_labels) {
    c.id2label.clear();
    for (int64_t i = 0; i < num_labels; ++i) c.id2label.push_back(fmt::format("LABEL_{}", i));
  }
  // HF's GPT2ForSequenceClassification needs a pad id for batches; GPT-2
  // has none, so fine-tuning recipes pad with eos.
  if (!c.pad_token_id) c.pad_token_id = c.eos_token_id;
  return c;
}

void set_task(ModelState& m, const GPT2Config& config, Task task) {
  m.config = config;
  m.task = task;
  m.num_labels = task == Task::Classify ? config.num_labels() : 0;
  m.gelu_exact = config.activation_function == "gelu";
}

// Host values; link() moves them into the flat buffers.
void add_param(ModelState& impl, const std::string& name, Tensor value) {
  Parameter p;
  p.name = name;
  p.value = std::move(value);
  p.decay = decays(name);
  impl.params.push_back(std::move(p));
}

}  // namespace

namespace {

// Lays the parameters out in flat buffers on `device` (FlatLayout) and makes
// each Parameter's value and grad views of them.
void flatten(ModelState& m, Device device) {
  auto align = [](int64_t n) { return (n + FlatLayout::kAlign - 1) / FlatLayout::kAlign * FlatLayout::kAlign; };
  int64_t at = 0;
  for (bool decay : {true, false}) {
    for (Parameter& p : m.params)
      if (p.decay == decay) {
        p.offset = at;
        at = align(at + p.value.numel());
      }
    if (decay) m.layout.decay_end = at;
  }
  m.layout.total = at;
  m.device = device;
  m.values = Tensor::empty({at}, DType::F32, device);  // zero-filled: the gaps stay zero
  m.grads = Tensor::empty({at}, DType::F32, device);
  m.segments.clear();
  for (Parameter& p : m.params) {
    const Tensor host = to_device(p.value, Device::CPU);
    const size_t byte_offset = static_cast<size_t>(p.offset) * sizeof(float);
    Tensor value = Tensor::from_storage(m.values.storage(), byte_offset, host.shape(), DType::F32);
    copy_bytes(value.raw(), device, host.raw(), Device::CPU, host.nbytes());
    p.value = std::move(value);
    p.grad = Tensor::from_storage(m.grads.storage(), byte_offset, host.shape(), DType::F32);
    m.segments.push_back({p.offset, p.value.numel()});
  }
}

}  // namespace

void ModelState::link(Device on) {
  flatten(*this, on);
  auto find = [&](const std::string& name) {
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].name == name) return i;
    fail("trainable model: missing parameter {}", name);
  };
  wte = find("wte.weight");
  wpe = find("wpe.weight");
  ln_f_w = find("ln_f.weight");
  ln_f_b = find("ln_f.bias");
  if (task == Task::Classify) score = find("score.weight");
  blocks.clear();
  for (int64_t l = 0; l < config.n_layer; ++l) {
    const std::string p = fmt::format("h.{}.", l);
    blocks.push_back({find(p + "ln_1.weight"), find(p + "ln_1.bias"), find(p + "attn.c_attn.weight"),
                      find(p + "attn.c_attn.bias"), find(p + "attn.c_proj.weight"), find(p + "attn.c_proj.bias"),
                      find(p + "ln_2.weight"), find(p + "ln_2.bias"), find(p + "mlp.c_fc.weight"),
                      find(p + "mlp.c_fc.bias"), find(p + "mlp.c_proj.weight"), find(p + "mlp.c_proj.bias")});
  }
  std::map<std::string, Tensor> views;
  for (const Parameter& p : params) views[p.name] = p.value;
  view_model = GPT2Model::over_tensors(config, kind(), views, device);
}

TrainableGPT2 TrainableGPT2::init(const GPT2Config& config, Task task, int64_t num_labels, uint64_t seed,
                                  Device device) {
  const GPT2Config c = task_config(config, task, num_labels);
  auto impl = std::make_unique<Impl>();
  set_task(*impl, c, task);
  for (const TensorSpec& spec : expected_tensors(c, impl->kind()))
    add_param(*impl, spec.name, init_value(c, spec.name, spec.shape, seed));
  impl->link(device);
  return TrainableGPT2(std::move(impl));
}

TrainableGPT2 TrainableGPT2::from_checkpoint(const Checkpoint& ckpt, Task task, int64_t num_labels, uint64_t seed,
                                             Device device) {
  const std::string src = ckpt.dir.string();
  if (ckpt.quantized()) fail("{}: a quantized checkpoint cannot be trained (start from the fp32/fp16 model)", src);
  if (task == Task::Classify && num_labels <= 0) {
    if (ckpt.kind != ModelKind::SequenceClassification)
      fail("{}: not a classifier checkpoint; say how many labels the new head has", src);
    num_labels = ckpt.config.num_labels();
  }
  GPT2Config c;
  try {
    c = task_config(ckpt.config, task, num_labels);
  } catch (const Error& e) {
    fail("{}: {}", src, e.what());
  }
  auto impl = std::make_unique<Impl>();
  set_task(*impl, c, task);
  if (task == Task::LM && ckpt.has("lm_head.weight")) {
    const Tensor head = ckpt.get_f32("lm_head.weight"), wte = ckpt.get_f32("wte.weight");
    if (head.shape() != wte.shape() ||
        !std::equal(head.span<float>().begin(), head.span<float>().end(), wte.span<float>().begin()))
      fail("{}: lm_head.weight differs from wte.weight; only the tied LM head is supported", src);
  }
  for (const TensorSpec& spec : expected_tensors(c, impl->kind())) {
    if (spec.name == "score.weight" && !ckpt.has(spec.name)) {
      add_param(*impl, spec.name, init_value(c, spec.name, spec.shape, seed));  // a new head, as HF adds it
      continue;
    }
    Tensor t = ckpt.get_f32(spec.name);
    if (t.shape() != spec.shape)
      fail("{}: tensor {} has shape {}, expected {} ({})", src, spec.name, shape_str(t.shape()),
           shape_str(spec.shape), spec.dims);
    add_param(*impl, spec.name, t.clone());
  }
  impl->link(device);
  return TrainableGPT2(std::move(impl));
}

TrainableGPT2::TrainableGPT2(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainableGPT2::TrainableGPT2(TrainableGPT2&&) noexcept = default;
TrainableGPT2& TrainableGPT2::operator=(TrainableGPT2&&) noexcept = default;
TrainableGPT2::~TrainableGPT2() = default;

const GPT2Config& TrainableGPT2::config() const { return impl_->config; }
Task TrainableGPT2::task() const { return impl_->task; }
ModelKind TrainableGPT2::kind() const { return impl_->kind(); }
int64_t TrainableGPT2::num_labels() const { return impl_->num_labels; }
std::vector<Parameter>& TrainableGPT2::parameters() { return impl_->params; }
const std::vector<Parameter>& TrainableGPT2::parameters() const { return impl_->params; }
const GPT2Model& TrainableGPT2::inference_model() const { return *impl_->view_model; }
Device TrainableGPT2::device() const { return impl_->device; }
const Tensor& TrainableGPT2::flat_values() const { return impl_->values; }
Tensor& TrainableGPT2::flat_grads() { return impl_->grads; }
const FlatLayout& TrainableGPT2::layout() const { return impl_->layout; }
std::span<const backend::GradSegment> TrainableGPT2::grad_segments() const { return impl_->segments; }

void TrainableGPT2::set_dropout(double p) {
  if (!(p >= 0.0 && p < 1.0)) fail("dropout probability {} outside [0, 1)", p);
  impl_->config.embd_pdrop = impl_->config.attn_pdrop = impl_->config.resid_pdrop = p;
}

TrainPrecision parse_train_precision(const std::string& name) {
  if (name == "fp32") return TrainPrecision::fp32;
  if (name == "bf16") return TrainPrecision::bf16;
  fail("unknown training precision '{}' (fp32 or bf16)", name);
}

const char* train_precision_name(TrainPrecision p) { return p == TrainPrecision::bf16 ? "bf16" : "fp32"; }

void TrainableGPT2::set_precision(TrainPrecision p) {
  if (p == TrainPrecision::bf16 && impl_->device != Device::CUDA)
    fail("bf16 training runs on a GPU (--device cuda); on {} training is fp32", device_name(impl_->device));
  impl_->precision = p;
}

TrainPrecision TrainableGPT2::precision() const { return impl_->precision; }

void TrainableGPT2::zero_grad() { zero_bytes(impl_->grads.raw(), impl_->device, impl_->grads.nbytes()); }

std::vector<std::pair<std::string, Tensor>> TrainableGPT2::canonical_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Parameter& p : impl_->params) out.emplace_back(p.name, to_device(p.value, Device::CPU));
  return out;
}

}  // namespace gpt2q::train
