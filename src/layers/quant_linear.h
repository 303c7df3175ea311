#pragma once
// The Linear of a packed quantized weight (ops/quantized_tensor.h): int8
// affine, LLM.int8() (bitsandbytes' Linear8bitLt) or NF4 / FP4 (Linear4bit).
// The weight is held packed on its device and never expanded to a full
// fp32 copy; ops::quant_linear runs the format's kernels there.
#include <memory>
#include <string_view>

#include "layers/linear.h"
#include "quant/blockwise4.h"
#include "quant/int8_affine.h"
#include "quant/llm_int8.h"

namespace gpt2q {

class QuantLinear final : public Linear {
 public:
  // weight [out, in] and bias [out] (F32 or undefined) on the placement's
  // device. options.compute: the arithmetic (F32 or BF16 on the CPU, where
  // BF16 applies to int8_affine and blockwise4; F32, F16 or BF16 on CUDA,
  // the activations' dtype).
  QuantLinear(QuantizedTensor weight, Tensor bias, ops::QuantLinearOptions options, Placement placement);

  // Quantized from a GPT-2 Conv1D weight [in, out] (+ bias [out]) on the
  // host, for `placement`; `what` names the layer in errors.
  static std::unique_ptr<QuantLinear> int8_from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                       quant::Int8Scheme scheme, quant::Int8Granularity granularity,
                                                       std::string_view what, DType compute = DType::F32,
                                                       const Placement& placement = {});
  static std::unique_ptr<QuantLinear> blockwise4_from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                             const quant::Blockwise4Options& options,
                                                             std::string_view what, DType compute = DType::F32,
                                                             const Placement& placement = {});
  static std::unique_ptr<QuantLinear> llm_int8_from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                           const quant::LlmInt8Options& options, std::string_view what,
                                                           const Placement& placement = {});

  int64_t in_features() const override { return w_.in(); }
  int64_t out_features() const override { return w_.out(); }
  void forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue = {}) const override;
  size_t bytes() const override;
  std::string format() const override { return w_.format_name(); }
  const Placement& placement() const override { return placement_; }
  const QuantizedTensor& weight() const { return w_; }
  const ops::QuantLinearOptions& options() const { return options_; }
  DType compute_dtype() const { return options_.compute; }

 private:
  QuantizedTensor w_;
  Tensor b_;
  ops::QuantLinearOptions options_;
  Placement placement_;
};

// A QuantLinear on `placement` from a packed weight and its bias (host or
// device); `compute` as the QuantLinear constructor, llm_int8_threshold for
// LLM.int8 weights.
std::unique_ptr<QuantLinear> make_quant_linear(QuantizedTensor weight, const Tensor& bias, DType compute,
                                               float llm_int8_threshold, const Placement& placement,
                                               const std::string& what);

}  // namespace gpt2q
