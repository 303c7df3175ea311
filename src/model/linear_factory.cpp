#include "model/linear_factory.h"

#include <fmt/format.h>

#include "core/error.h"
#include "quant/blockwise4_linear.h"
#include "quant/half_linear.h"
#include "quant/int8_affine_linear.h"
#include "quant/llm_int8_linear.h"
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

std::vector<float> bias_values(const Checkpoint& ck, const std::string& name, int64_t out) {
  Tensor b = to_f32(checked(ck, name, {out}));
  const float* p = b.data<float>();
  return std::vector<float>(p, p + out);
}

std::unique_ptr<Linear> make_quantized_linear(const Checkpoint& ck, const std::string& module, const Shape& in_out) {
  const quant::QuantizationConfig cfg = quant::checkpoint_quantization(ck);
  const std::string W = module + ".weight";
  const int64_t in = in_out[0], out = in_out[1];
  quant::QuantizedWeight qw = quant::read_quantized_weight(ck, cfg, W, out, in);
  std::vector<float> bias = bias_values(ck, module + ".bias", out);
  switch (cfg.method) {
    case quant::QuantMethod::int8_tensor:
      return std::make_unique<quant::Int8AffineLinear>(std::get<quant::Int8Weight>(std::move(qw)), std::move(bias),
                                                       cfg.compute());
    case quant::QuantMethod::llm_int8: {
      quant::LlmInt8Options opt;
      opt.threshold = cfg.llm_int8_threshold;
      return std::make_unique<quant::LlmInt8Linear>(std::get<quant::LlmInt8Weight>(std::move(qw)), std::move(bias),
                                                    opt);
    }
    case quant::QuantMethod::nf4:
    case quant::QuantMethod::fp4:
      return std::make_unique<quant::Blockwise4Linear>(std::get<quant::Blockwise4Weight>(std::move(qw)),
                                                       std::move(bias), cfg.compute());
  }
  GPT2Q_CHECK(false, "unknown quantization method");
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

std::unique_ptr<Linear> make_linear(const Checkpoint& ck, const std::string& module) {
  const Shape in_out = block_linear_shape(ck.config, module);
  const std::string W = module + ".weight";
  if (ck.quantized_weights.count(W)) return make_quantized_linear(ck, module, in_out);
  const Tensor& w = checked(ck, W, in_out);
  // As embedding_table.cpp: a quantized model keeps no view of its file (it
  // copies what it keeps, so the mapping is released after loading); a plain
  // checkpoint's weights are views of the mapping.
  const bool copy = ck.quantized();
  // 16-bit weights stay 16-bit, as stored, and run as such (quant/half_linear.h).
  if (w.dtype() == DType::F16 || w.dtype() == DType::BF16)
    return std::make_unique<quant::HalfLinear>(copy ? w.clone() : w, bias_values(ck, module + ".bias", in_out[1]));
  Tensor w32 = to_f32(w), b32 = to_f32(checked(ck, module + ".bias", {in_out[1]}));
  if (copy) {
    if (w32.storage() == w.storage()) w32 = w32.clone();
    b32 = b32.clone();
  }
  return make_dense_linear(std::move(w32), std::move(b32));
}

}  // namespace gpt2q
