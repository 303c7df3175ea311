#pragma once
// The two roundings every format here is defined with.
#include <cmath>

#include "core/half.h"

namespace gpt2q {

// torch.round and CUDA's __float2int_rn: nearest, ties to even. std::nearbyint
// rounds in the current mode, which gpt2q never changes from nearest-even.
inline float round_half_even(float v) { return std::nearbyint(v); }

// What `tensor.to(torch.float16)` does to an fp32 value, back in fp32.
inline float round_through_fp16(float v) { return half_to_float(float_to_half(v)); }

}  // namespace gpt2q
