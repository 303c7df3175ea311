#pragma once
// gpt2q::Linear over a 16-bit (F16 / BF16) weight in GPT-2's Conv1D layout
// [in, out], kept as stored: the tensor is shared, not copied, so a weight
// loaded from disk stays a zero-copy view of the mapping and the layer holds
// the 2 bytes per weight the file stores (as torch's model.half()). Every
// product runs on the exactly converted fp32 values (core/half.h), so the
// result is an fp32 matmul of the converted weight; only the summation
// order differs from ops::linear:
//   rows <= kFusedMaxRows (decoding)  one pass over the weight, converting
//                                     in registers (fused convert + FMA)
//   more rows                         blocks of weight rows (<= 4 MiB in
//                                     fp32) converted into a buffer of the
//                                     calling thread, one sgemm each, summed
//                                     into y
// The bias stays fp32.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/linear.h"

namespace gpt2q::quant {

class HalfLinear final : public Linear {
 public:
  static constexpr int64_t kFusedMaxRows = 8;

  // weight_in_out: F16 or BF16 [in, out]; bias: empty or [out].
  HalfLinear(Tensor weight_in_out, std::vector<float> bias);

  int64_t in_features() const override { return w_.dim(0); }
  int64_t out_features() const override { return w_.dim(1); }
  void forward(const float* x, int64_t rows, float* y) const override;
  size_t bytes() const override { return w_.nbytes() + bias_.size() * sizeof(float); }
  std::string format() const override { return bf16_ ? "bf16" : "f16"; }
  const Tensor& weight() const { return w_; }

 private:
  void forward_fused(const float* x, int64_t rows, float* y) const;
  void forward_blocked(const float* x, int64_t rows, float* y) const;

  Tensor w_;
  std::vector<float> bias_;
  bool bf16_;
};

}  // namespace gpt2q::quant
