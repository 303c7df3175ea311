// train_kernels.h: elementwise kernels of the training pass (dropout, GELU
// backward, AdamW), grid-stride loops over any n.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/train_kernels.h"

namespace gpt2q::cuda {

namespace {

// core/splitmix64.h, for device code (the same constants and steps).
__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__global__ void dropout_kernel(float* x, int64_t n, float p, float scale, uint64_t key, uint64_t first) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    // cpu::dropout_uniform: the top 24 bits as a multiple of 2^-24 (exact).
    const float u = static_cast<float>(splitmix64(key + first + static_cast<uint64_t>(i)) >> 40) * 0x1p-24f;
    x[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f;
  }
}

__global__ void gelu_new_backward_kernel(const float* x, float* dy, int64_t n) {
  const double k = 0.79788456080286535588;  // sqrt(2 / pi)
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const double v = x[i];
    const double t = tanh(k * (v + 0.044715 * v * v * v));
    const double grad = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
    dy[i] = static_cast<float>(dy[i] * grad);
  }
}

__global__ void gelu_erf_backward_kernel(const float* x, float* dy, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const double v = x[i];
    const double grad = 0.5 * erfc(-v * 0.70710678118654752440) + v * exp(-0.5 * v * v) * 0.39894228040143267794;
    dy[i] = static_cast<float>(dy[i] * grad);
  }
}

__global__ void adamw_kernel(const backend::AdamWArgs a) {
  const backend::AdamWStep k = a.k;
  for (int64_t i = grid_start(); i < a.n; i += grid_stride()) {
    float p = a.param[i];
    if (k.decay) p = __fmul_rn(p, k.keep);
    const float g = a.grad[i], m0 = a.exp_avg[i], v0 = a.exp_avg_sq[i];
    const float m = __fmaf_rn(k.w1, __fsub_rn(g, m0), m0);
    const float v = __fmaf_rn(__fmul_rn(k.w2, g), g, __fmul_rn(v0, k.b2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.bc2_sqrt), k.eps);
    a.param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(k.neg_step_size, m), denom));
    a.exp_avg[i] = m;
    a.exp_avg_sq[i] = v;
  }
}

}  // namespace

void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first, cudaStream_t stream) {
  if (p <= 0.0f || n <= 0) return;
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;  // cpu::dropout_scale, on the host
  dropout_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, n, p, scale, key, first);
  check_launch("dropout kernel");
}

void gelu_new_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_new_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, dy, n);
  check_launch("gelu_new_backward kernel");
}

void gelu_erf_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_erf_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, dy, n);
  check_launch("gelu_erf_backward kernel");
}

void adamw_update(const backend::AdamWArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  adamw_kernel<<<elementwise_blocks(a.n), kElementwiseThreads, 0, stream>>>(a);
  check_launch("adamw kernel");
}

}  // namespace gpt2q::cuda
