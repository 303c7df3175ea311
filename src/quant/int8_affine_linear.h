#pragma once
// gpt2q::Linear over an int8 weight-only format (int8_affine.h).
#include <memory>
#include <string_view>
#include <vector>

#include "model/linear.h"
#include "quant/int8_affine.h"

namespace gpt2q::quant {

class Int8AffineLinear final : public Linear {
 public:
  // compute: F32, or BF16 (bf16 activations times the exact integer codes; int8_matmul).
  Int8AffineLinear(Int8Weight weight, std::vector<float> bias, DType compute = DType::F32);
  // From a GPT-2 Conv1D weight [in, out] (+ bias [out]); `what` names the layer in errors.
  static std::unique_ptr<Int8AffineLinear> from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                       Int8Scheme scheme, Int8Granularity granularity,
                                                       std::string_view what, DType compute = DType::F32);

  int64_t in_features() const override { return weight_.in; }
  int64_t out_features() const override { return weight_.out; }
  void forward(const float* x, int64_t rows, float* y) const override;
  size_t bytes() const override { return weight_.bytes() + bias_.size() * sizeof(float); }
  std::string format() const override { return weight_.format(); }
  DType compute_dtype() const { return compute_; }
  const Int8Weight& weight() const { return weight_; }

 private:
  Int8Weight weight_;
  std::vector<float> bias_;
  DType compute_;
};

}  // namespace gpt2q::quant
