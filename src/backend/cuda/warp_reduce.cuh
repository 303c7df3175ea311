#pragma once
// Warp reductions shared by our GEMV kernels (quant_gemv.cu, dense_gemv.cu).
// Device code only.
#include <cuda_runtime.h>

namespace gpt2q::cuda {

// Reduce-scatter of V values (V a power of two <= 32) over the warp: lane l
// ends with the warp's sum of v[l >> (5 - log2 V)]. Each halving step sends
// half of the remaining values to the partner lane: V - 1 + 5 - log2 V
// shuffles instead of 5 V. Template recursion keeps every index a
// compile-time constant (a run-time loop put the array in local memory).
// The order of the additions is fixed: the result does not depend on timing.
template <int N, int OFF>
__device__ __forceinline__ void reduce_scatter_level(float* v, int lane) {
  if constexpr (N > 1) {
    const bool upper = (lane & OFF) != 0;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const float send = upper ? v[i] : v[i + N / 2];
      const float keep = upper ? v[i + N / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
    }
    reduce_scatter_level<N / 2, OFF / 2>(v, lane);
  } else if constexpr (OFF > 0) {
    v[0] += __shfl_xor_sync(0xffffffffu, v[0], OFF);
    reduce_scatter_level<1, OFF / 2>(v, lane);
  }
}
template <int V>
__device__ __forceinline__ float warp_reduce_scatter(float (&v)[V]) {
  static_assert(V >= 1 && V <= 32 && (V & (V - 1)) == 0, "V must be a power of two <= 32");
  reduce_scatter_level<V, 16>(v, static_cast<int>(threadIdx.x & 31));
  return v[0];
}
// log2(32 / V): lane l holds the sum of v[l >> shift] (lanes with the low
// `shift` bits zero report it).
template <int V>
inline constexpr int kScatterShift = 5 - (V >= 32 ? 5 : V >= 16 ? 4 : V >= 8 ? 3 : V >= 4 ? 2 : V >= 2 ? 1 : 0);

}  // namespace gpt2q::cuda
