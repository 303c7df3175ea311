#pragma once
// Shared by the .cu files: grid sizing for grid-stride loops and block-wide
// reductions. Device code only; no gpt2q host headers.
#include <cstdint>

namespace gpt2q::cuda {

inline constexpr int kElementwiseThreads = 256;
// Grid-stride loops cover any n with at most this many blocks (enough to
// fill an H200's 132 SMs many times over).
inline constexpr int64_t kMaxElementwiseBlocks = int64_t{1} << 16;

inline unsigned elementwise_blocks(int64_t n) {
  const int64_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  return static_cast<unsigned>(blocks < kMaxElementwiseBlocks ? blocks : kMaxElementwiseBlocks);
}

// First index and stride of a 1-D grid-stride loop, in 64 bits.
__device__ inline int64_t grid_start() { return int64_t{blockIdx.x} * blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_stride() { return int64_t{gridDim.x} * blockDim.x; }

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__device__ inline T warp_max(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum / max of one value per thread over the whole block (blockDim.x a
// multiple of 32, at most 1024); every thread gets the result. `scratch`
// holds 32 values in shared memory; the call begins and ends with a barrier,
// so scratch can be reused right after.
template <typename T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : T(0);
  total = warp_sum(total);
  __syncthreads();
  return total;
}

template <typename T>
__device__ inline T block_max(T v, T* scratch, T lowest) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T m = lane < warps ? scratch[lane] : lowest;
  m = warp_max(m);
  __syncthreads();
  return m;
}

// The CPU's LayerNorm statistics (backend/cpu/formulas.h) of one row of
// `cols` floats, for every thread of the block: the mean first, then the
// squared deviations from it, both summed in double (a large common offset
// costs no precision). `scratch` as block_sum's.
struct RowStats {
  double mean, rstd;
};
__device__ inline RowStats block_row_stats(const float* xr, int64_t cols, float eps, double* scratch) {
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c];
  const double mean = block_sum(sum, scratch) / static_cast<double>(cols);
  double sq = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const double d = xr[c] - mean;
    sq += d * d;
  }
  return {mean, 1.0 / sqrt(block_sum(sq, scratch) / static_cast<double>(cols) + static_cast<double>(eps))};
}

}  // namespace gpt2q::cuda
