#pragma once
// The dropout masks of the training pass in device code: core/splitmix64.h's
// mixer and cpu::dropout_uniform's rule (element `index` of a site is kept
// iff the top 24 bits of splitmix64(key + index), times 2^-24, are >= p), so
// a mask is the same on every device. Device code only.
#include <cstdint>

namespace gpt2q::cuda {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ float dropout_uniform(uint64_t key, uint64_t index) {
  return static_cast<float>(splitmix64(key + index) >> 40) * 0x1p-24f;  // exact
}

}  // namespace gpt2q::cuda
