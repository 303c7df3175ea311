#include "quant/conv1d_weight.h"

#include "core/error.h"

namespace gpt2q::quant {

LinearWeights linear_weights_from_conv1d(const Tensor& weight_in_out, const Tensor& bias, std::string_view what) {
  if (!weight_in_out.defined() || weight_in_out.ndim() != 2 || weight_in_out.dtype() != DType::F32 ||
      weight_in_out.numel() == 0)
    fail("{}: expected a non-empty 2-D F32 weight, got {} {}", what,
         weight_in_out.defined() ? dtype_name(weight_in_out.dtype()) : "nothing",
         weight_in_out.defined() ? shape_str(weight_in_out.shape()) : "");
  LinearWeights r;
  r.in = weight_in_out.dim(0);
  r.out = weight_in_out.dim(1);
  const float* src = weight_in_out.data<float>();
  r.weight.resize(static_cast<size_t>(r.in * r.out));
  for (int64_t k = 0; k < r.in; ++k)
    for (int64_t j = 0; j < r.out; ++j) r.weight[j * r.in + k] = src[k * r.out + j];
  if (bias.defined()) {
    if (bias.dtype() != DType::F32 || bias.ndim() != 1 || bias.dim(0) != r.out)
      fail("{}: bias must be F32 [{}], got {} {}", what, r.out, dtype_name(bias.dtype()), shape_str(bias.shape()));
    const float* b = bias.data<float>();
    r.bias.assign(b, b + r.out);
  }
  return r;
}

}  // namespace gpt2q::quant
