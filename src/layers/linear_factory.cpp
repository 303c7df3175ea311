#include "layers/linear_factory.h"

#include <fmt/format.h>

#include "core/error.h"
#include "layers/dense_linear.h"
#include "layers/quant_linear.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const Tensor& checked(const Checkpoint& ck, const std::string& name, const Shape& shape) {
  const Tensor& t = ck.get(name);
  if (t.shape() != shape)
    fail("{}: tensor '{}' has shape {}, the config implies {}", ck.dir.string(), name, shape_str(t.shape()),
         shape_str(shape));
  return t;
}

std::unique_ptr<Linear> make_quantized_linear(const Checkpoint& ck, const std::string& module, const Shape& in_out,
                                              const Placement& placement) {
  const quant::QuantizationConfig cfg = quant::checkpoint_quantization(ck);
  const std::string W = module + ".weight";
  const int64_t in = in_out[0], out = in_out[1];
  QuantizedTensor qw = quant::to_quantized_tensor(quant::read_quantized_weight(ck, cfg, W, out, in));
  const Tensor bias = to_f32(checked(ck, module + ".bias", {out}));
  // The CPU keeps the checkpoint's arithmetic (quant_config.h); on a GPU the
  // placement's compute dtype is the activations' (LLM.int8 included).
  const DType compute = placement.device == Device::CPU
                            ? (cfg.method == quant::QuantMethod::llm_int8 ? DType::F32 : cfg.compute())
                            : placement.compute;
  return make_quant_linear(std::move(qw), bias.storage() == ck.get(module + ".bias").storage() ? bias.clone() : bias,
                           compute, cfg.llm_int8_threshold, placement, W);
}

}  // namespace

Shape block_linear_shape(const GPT2Config& c, const std::string& module) {
  const int64_t C = c.n_embd, I = c.inner();
  if (ends_with(module, ".attn.c_attn")) return {C, 3 * C};
  if (ends_with(module, ".attn.c_proj")) return {C, C};
  if (ends_with(module, ".mlp.c_fc")) return {C, I};
  if (ends_with(module, ".mlp.c_proj")) return {I, C};
  fail("'{}' is not a GPT-2 block projection (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)", module);
}

std::unique_ptr<Linear> make_linear(const Checkpoint& ck, const std::string& module, const Placement& placement) {
  const Shape in_out = block_linear_shape(ck.config, module);
  const std::string W = module + ".weight";
  if (ck.quantized_weights.count(W)) return make_quantized_linear(ck, module, in_out, placement);
  const Tensor& w = checked(ck, W, in_out);
  if (w.dtype() != DType::F32 && w.dtype() != DType::F16 && w.dtype() != DType::BF16)
    fail("{}: tensor {} has dtype {}; GPT-2 weights must be F32, F16 or BF16", ck.dir.string(), W,
         dtype_name(w.dtype()));
  Tensor b = to_f32(checked(ck, module + ".bias", {in_out[1]}));
  // A quantized model keeps no view of its file (it copies what it keeps,
  // so the mapping is released after loading); a plain checkpoint's weights
  // are views of the mapping (on the CPU).
  auto lin = make_dense_linear(w, b, placement, W);
  if (ck.quantized() && placement.device == Device::CPU && lin->weight().storage() == w.storage())
    return make_dense_linear(w.clone(), b.clone(), placement, W);
  return lin;
}

}  // namespace gpt2q
