#pragma once
// gpt2q::Linear over NF4 / FP4 (blockwise4.h), like bnb's Linear4bit.
#include <memory>
#include <string_view>
#include <vector>

#include "model/linear.h"
#include "quant/blockwise4.h"

namespace gpt2q::quant {

class Blockwise4Linear final : public Linear {
 public:
  // compute: F32, or BF16 for bnb_4bit_compute_dtype=bfloat16 (blockwise4_matmul).
  Blockwise4Linear(Blockwise4Weight weight, std::vector<float> bias, DType compute = DType::F32);
  static std::unique_ptr<Blockwise4Linear> from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                       const Blockwise4Options& options, std::string_view what,
                                                       DType compute = DType::F32);

  int64_t in_features() const override { return weight_.in; }
  int64_t out_features() const override { return weight_.out; }
  void forward(const float* x, int64_t rows, float* y) const override;
  size_t bytes() const override { return weight_.bytes() + bias_.size() * sizeof(float); }
  std::string format() const override { return weight_.format(); }
  DType compute_dtype() const { return compute_; }
  const Blockwise4Weight& weight() const { return weight_; }

 private:
  Blockwise4Weight weight_;
  std::vector<float> bias_;
  DType compute_;
};

}  // namespace gpt2q::quant
