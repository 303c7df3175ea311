#include "quant/blockwise4_linear.h"

#include "core/error.h"
#include "quant/conv1d_weight.h"

namespace gpt2q::quant {

Blockwise4Linear::Blockwise4Linear(Blockwise4Weight weight, std::vector<float> bias, DType compute)
    : weight_(std::move(weight)), bias_(std::move(bias)), compute_(compute) {
  GPT2Q_CHECK(compute_ == DType::F32 || compute_ == DType::BF16, "compute dtype {} (F32 or BF16)", dtype_name(compute_));
  GPT2Q_CHECK(bias_.empty() || static_cast<int64_t>(bias_.size()) == weight_.out, "bias of {} for {} outputs",
              bias_.size(), weight_.out);
}

std::unique_ptr<Blockwise4Linear> Blockwise4Linear::from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                                const Blockwise4Options& options,
                                                                std::string_view what, DType compute) {
  LinearWeights lw = linear_weights_from_conv1d(weight_in_out, bias, what);
  try {
    return std::make_unique<Blockwise4Linear>(quantize_4bit(lw.weight.data(), lw.out, lw.in, options),
                                              std::move(lw.bias), compute);
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

void Blockwise4Linear::forward(const float* x, int64_t rows, float* y) const {
  if (rows == 0) return;
  blockwise4_matmul(weight_, bias_.empty() ? nullptr : bias_.data(), x, rows, y, best_isa(), compute_);
}

}  // namespace gpt2q::quant
