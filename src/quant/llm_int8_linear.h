#pragma once
// gpt2q::Linear running LLM.int8() (llm_int8.h), like bnb's Linear8bitLt.
#include <memory>
#include <string_view>
#include <vector>

#include "model/linear.h"
#include "quant/llm_int8.h"

namespace gpt2q::quant {

class LlmInt8Linear final : public Linear {
 public:
  LlmInt8Linear(LlmInt8Weight weight, std::vector<float> bias, LlmInt8Options options);
  static std::unique_ptr<LlmInt8Linear> from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                    LlmInt8Options options, std::string_view what);

  int64_t in_features() const override { return weight_.in; }
  int64_t out_features() const override { return weight_.out; }
  void forward(const float* x, int64_t rows, float* y) const override;
  size_t bytes() const override { return weight_.bytes() + bias_.size() * sizeof(float); }
  std::string format() const override { return "llm-int8"; }
  const LlmInt8Weight& weight() const { return weight_; }
  const LlmInt8Options& options() const { return options_; }

 private:
  LlmInt8Weight weight_;
  std::vector<float> bias_;
  LlmInt8Options options_;
};

}  // namespace gpt2q::quant
