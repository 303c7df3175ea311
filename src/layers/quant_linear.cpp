#include "layers/quant_linear.h"

#include "core/error.h"
#include "layers/dense_linear.h"
#include "quant/conv1d_weight.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q {

namespace {

Tensor bias_tensor(std::vector<float> b) {
  if (b.empty()) return Tensor();
  const auto n = static_cast<int64_t>(b.size());
  return Tensor::from_vector(b, {n});
}

void check_compute(const Placement& p, DType compute) {
  const bool ok = p.device == Device::CPU ? (compute == DType::F32 || compute == DType::BF16)
                                          : (compute == DType::F32 || compute == DType::F16 || compute == DType::BF16);
  if (!ok) fail("compute dtype {} is not available on {}", dtype_name(compute), device_name(p.device));
}

}  // namespace

QuantLinear::QuantLinear(QuantizedTensor weight, Tensor bias, ops::QuantLinearOptions options, Placement placement)
    : w_(std::move(weight)), b_(std::move(bias)), options_(options),
      placement_(placement) {
  check_compute(placement_, options_.compute);
  GPT2Q_CHECK(w_.defined() && w_.device() == placement_.device, "quantized linear: weight not on {}",
              device_name(placement_.device));
  GPT2Q_CHECK(!b_.defined() || (b_.dtype() == DType::F32 && b_.numel() == w_.out() && b_.device() == w_.device()),
              "quantized linear: bias must be F32 [{}] beside the weight", w_.out());
  if (!(options_.llm_int8_threshold >= 0.0f))
    fail("LLM.int8: threshold must be >= 0, got {}", options_.llm_int8_threshold);
}

void QuantLinear::forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue) const {
  ops::quant_linear(x, w_, b_, y, options_, epilogue);
}

size_t QuantLinear::bytes() const {
  size_t n = w_.bytes();
  for (const Tensor* t : {&b_})
    if (t->defined()) n += t->nbytes();
  return n;
}

std::unique_ptr<QuantLinear> make_quant_linear(QuantizedTensor weight, const Tensor& bias, DType compute,
                                               float llm_int8_threshold, const Placement& placement,
                                               const std::string& what) {
  weight.validate(what);
  ops::QuantLinearOptions o;
  o.compute = compute;
  o.llm_int8_threshold = llm_int8_threshold;
  Tensor b;
  if (bias.defined()) {
    if (bias.dtype() != DType::F32 || bias.numel() != weight.out())
      fail("{}: bias {} {} should be F32 [{}]", what, dtype_name(bias.dtype()), shape_str(bias.shape()), weight.out());
    b = to_device(bias, placement.device);
  }
  return std::make_unique<QuantLinear>(to_device(weight, placement.device), std::move(b), o, placement);
}

std::unique_ptr<QuantLinear> QuantLinear::int8_from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                           quant::Int8Scheme scheme,
                                                           quant::Int8Granularity granularity, std::string_view what,
                                                           DType compute, const Placement& placement) {
  quant::LinearWeights lw = quant::linear_weights_from_conv1d(weight_in_out, bias, what);
  try {
    return make_quant_linear(
        quant::to_quantized_tensor(quant::quantize_int8(lw.weight.data(), lw.out, lw.in, scheme, granularity)),
        bias_tensor(std::move(lw.bias)), compute, 0.0f, placement, std::string(what));
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

std::unique_ptr<QuantLinear> QuantLinear::blockwise4_from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                                 const quant::Blockwise4Options& options,
                                                                 std::string_view what, DType compute,
                                                                 const Placement& placement) {
  quant::LinearWeights lw = quant::linear_weights_from_conv1d(weight_in_out, bias, what);
  try {
    return make_quant_linear(quant::to_quantized_tensor(quant::quantize_4bit(lw.weight.data(), lw.out, lw.in, options)),
                             bias_tensor(std::move(lw.bias)), compute, 0.0f, placement, std::string(what));
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

std::unique_ptr<QuantLinear> QuantLinear::llm_int8_from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                               const quant::LlmInt8Options& options,
                                                               std::string_view what, const Placement& placement) {
  quant::LinearWeights lw = quant::linear_weights_from_conv1d(weight_in_out, bias, what);
  try {
    auto l = make_quant_linear(quant::to_quantized_tensor(quant::quantize_llm_int8(lw.weight.data(), lw.out, lw.in)),
                               bias_tensor(std::move(lw.bias)), placement.activations(), options.threshold, placement,
                               std::string(what));
    l->options_.llm_int8_fp32_epilogue = options.epilogue == quant::LlmInt8Epilogue::fp32;
    return l;
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

}  // namespace gpt2q
