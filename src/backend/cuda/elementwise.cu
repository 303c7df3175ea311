// Elementwise kernels: GELU (both forms), the residual add, the embedding
// gather and the bias broadcast that linear() starts from. Grid-stride
// loops, one element per step: memory bound, nothing to tile.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

// gelu_new(x) = 0.5·x·(1 + tanh(u)), u = sqrt(2/π)·(x + 0.044715·x³),
// written as x / (1 + exp(-2u)) (the same function: 1 + tanh(u) =
// 2 / (1 + exp(-2u))). The tanh form loses every digit to cancellation for
// negative x, where 1 + tanh(u) is tiny; this form has no cancellation, so
// the result stays within a few ulp down to where it underflows.
__global__ void gelu_new_kernel(float* x, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/π)
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const float v = x[i];
    const float u = k * (v + 0.044715f * v * v * v);
    x[i] = v / (1.0f + expf(-2.0f * u));
  }
}

// Exact GELU x·Φ(x) with Φ(x) = erfc(-x/√2) / 2: erfc keeps its relative
// accuracy in the left tail, where 1 + erf(x/√2) would cancel.
__global__ void gelu_erf_kernel(float* x, int64_t n) {
  const float inv_sqrt2 = 0.7071067811865476f;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const float v = x[i];
    x[i] = v * (0.5f * erfcf(-v * inv_sqrt2));
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) x[i] += y[i];
}

__global__ void embedding_kernel(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte,
                                 const float* wpe, int64_t cols, float* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride()) {
    const int64_t r = i / cols, c = i % cols;
    out[i] = wte[int64_t{ids[r]} * cols + c] + wpe[positions[r] * cols + c];
  }
}

__global__ void broadcast_rows_kernel(const float* row, int64_t rows, int64_t cols, float* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride()) out[i] = row[i % cols];
}

__global__ void fill_kernel(float* out, int64_t n, float value) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) out[i] = value;
}

}  // namespace

void gelu_new(float* x, int64_t n) {
  if (n <= 0) return;
  gelu_new_kernel<<<elementwise_blocks(n), kElementwiseThreads>>>(x, n);
  check_launch("gelu_new kernel");
}

void gelu_erf(float* x, int64_t n) {
  if (n <= 0) return;
  gelu_erf_kernel<<<elementwise_blocks(n), kElementwiseThreads>>>(x, n);
  check_launch("gelu_erf kernel");
}

void add_inplace(float* x, const float* y, int64_t n) {
  if (n <= 0) return;
  add_kernel<<<elementwise_blocks(n), kElementwiseThreads>>>(x, y, n);
  check_launch("add kernel");
}

void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out) {
  if (rows <= 0 || cols <= 0) return;
  embedding_kernel<<<elementwise_blocks(rows * cols), kElementwiseThreads>>>(ids, positions, rows, wte, wpe, cols,
                                                                             out);
  check_launch("embedding kernel");
}

void broadcast_rows(const float* row, int64_t rows, int64_t cols, float* out) {
  if (rows <= 0 || cols <= 0) return;
  broadcast_rows_kernel<<<elementwise_blocks(rows * cols), kElementwiseThreads>>>(row, rows, cols, out);
  check_launch("broadcast_rows kernel");
}

void fill(float* out, int64_t n, float value) {
  if (n <= 0) return;
  fill_kernel<<<elementwise_blocks(n), kElementwiseThreads>>>(out, n, value);
  check_launch("fill kernel");
}

}  // namespace gpt2q::cuda
