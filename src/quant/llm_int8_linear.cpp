#include "quant/llm_int8_linear.h"

#include "core/error.h"
#include "quant/conv1d_weight.h"

namespace gpt2q::quant {

LlmInt8Linear::LlmInt8Linear(LlmInt8Weight weight, std::vector<float> bias, LlmInt8Options options)
    : weight_(std::move(weight)), bias_(std::move(bias)), options_(options) {
  GPT2Q_CHECK(bias_.empty() || static_cast<int64_t>(bias_.size()) == weight_.out, "bias of {} for {} outputs",
              bias_.size(), weight_.out);
  if (!(options_.threshold >= 0.0f)) fail("LLM.int8: threshold must be >= 0, got {}", options_.threshold);
}

std::unique_ptr<LlmInt8Linear> LlmInt8Linear::from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                          LlmInt8Options options, std::string_view what) {
  LinearWeights lw = linear_weights_from_conv1d(weight_in_out, bias, what);
  try {
    return std::make_unique<LlmInt8Linear>(quantize_llm_int8(lw.weight.data(), lw.out, lw.in), std::move(lw.bias),
                                           options);
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

void LlmInt8Linear::forward(const float* x, int64_t rows, float* y) const {
  if (rows == 0) return;
  llm_int8_matmul(weight_, bias_.empty() ? nullptr : bias_.data(), x, rows, options_, y);
}

}  // namespace gpt2q::quant
