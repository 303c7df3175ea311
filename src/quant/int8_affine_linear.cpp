#include "quant/int8_affine_linear.h"

#include "core/error.h"
#include "quant/conv1d_weight.h"

namespace gpt2q::quant {

Int8AffineLinear::Int8AffineLinear(Int8Weight weight, std::vector<float> bias, DType compute)
    : weight_(std::move(weight)), bias_(std::move(bias)), compute_(compute) {
  GPT2Q_CHECK(compute_ == DType::F32 || compute_ == DType::BF16, "compute dtype {} (F32 or BF16)", dtype_name(compute_));
  GPT2Q_CHECK(bias_.empty() || static_cast<int64_t>(bias_.size()) == weight_.out, "bias of {} for {} outputs",
              bias_.size(), weight_.out);
}

std::unique_ptr<Int8AffineLinear> Int8AffineLinear::from_conv1d(const Tensor& weight_in_out, const Tensor& bias,
                                                                Int8Scheme scheme, Int8Granularity granularity,
                                                                std::string_view what, DType compute) {
  LinearWeights lw = linear_weights_from_conv1d(weight_in_out, bias, what);
  try {
    return std::make_unique<Int8AffineLinear>(quantize_int8(lw.weight.data(), lw.out, lw.in, scheme, granularity),
                                              std::move(lw.bias), compute);
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

void Int8AffineLinear::forward(const float* x, int64_t rows, float* y) const {
  if (rows == 0) return;
  int8_matmul(weight_, bias_.empty() ? nullptr : bias_.data(), x, rows, y, best_isa(), compute_);
}

}  // namespace gpt2q::quant
