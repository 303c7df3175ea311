#pragma once
// GPT-2 stores its projections as Conv1D weights [in, out]; every quantized
// format here works on nn.Linear's [out, in], as transformers does when it
// swaps Conv1D for a bitsandbytes layer. This does the checked transpose.
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace gpt2q::quant {

struct LinearWeights {
  int64_t in = 0, out = 0;
  std::vector<float> weight;  // [out, in]
  std::vector<float> bias;    // [out], or empty
};

// weight: F32 [in, out]; bias: F32 [out] or undefined. `what` names the layer
// in errors ("h.0.attn.c_attn: ...").
LinearWeights linear_weights_from_conv1d(const Tensor& weight_in_out, const Tensor& bias, std::string_view what);

}  // namespace gpt2q::quant
