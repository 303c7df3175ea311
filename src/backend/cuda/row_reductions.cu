// Row-wise kernels: LayerNorm and softmax, one thread block per row (a
// grid-stride loop over rows when there are more rows than blocks), the
// block's threads striding over the columns.
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

constexpr int kRowThreads = 256;
constexpr int64_t kMaxRowBlocks = 65535;

unsigned row_blocks(int64_t rows) { return static_cast<unsigned>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks); }

// The statistics are the CPU kernels' (backend/cpu/formulas.h): the mean
// first, then squared deviations from it, both summed in double, so a large
// common offset costs no precision. Each thread reads and writes only its own
// columns in the last loop, after the barriers inside block_sum, so y may
// alias x (when both are fp32).
template <typename T>
__global__ void layer_norm_kernel(const float* x, int64_t rows, int64_t cols, const float* w, const float* b,
                                  float eps, T* y) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c];
    const double mean = block_sum(sum, scratch) / static_cast<double>(cols);
    double sq = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double d = xr[c] - mean;
      sq += d * d;
    }
    const double rstd = 1.0 / sqrt(block_sum(sq, scratch) / static_cast<double>(cols) + static_cast<double>(eps));
    T* yr = y + r * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] = from_float<T>(static_cast<float>((xr[c] - mean) * rstd * w[c] + b[c]));
  }
}

// Max-subtracted softmax: the max in fp32 (exact), each exp in fp32, their
// sum in double. -inf entries get exp(-inf) = 0; an all -inf row gives NaN,
// as the reference does.
__global__ void softmax_kernel(float* x, int64_t rows, int64_t cols) {
  __shared__ float max_scratch[32];
  __shared__ double sum_scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* xr = x + r * cols;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
    m = block_max(m, max_scratch, -INFINITY);
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += expf(xr[c] - m);
    sum = block_sum(sum, sum_scratch);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      xr[c] = static_cast<float>(static_cast<double>(expf(xr[c] - m)) / sum);
  }
}

// One block per row: the max, then exp(x - max) summed in double.
__global__ void token_nll_kernel(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll) {
  __shared__ float max_scratch[32];
  __shared__ double sum_scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = logits + r * V;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) m = fmaxf(m, x[c]);
    m = block_max(m, max_scratch, -INFINITY);
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) sum += exp(static_cast<double>(x[c]) - m);
    sum = block_sum(sum, sum_scratch);
    if (threadIdx.x == 0) nll[r] = static_cast<double>(m) + log(sum) - static_cast<double>(x[target[r]]);
  }
}

}  // namespace

void token_nll(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll, cudaStream_t stream) {
  if (rows <= 0) return;
  token_nll_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(logits, rows, V, target, nll);
  check_launch("token_nll kernel");
}

void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, void* y,
                DType y_dtype, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  with_float_type(
      y_dtype,
      [&](auto t) {
        using T = decltype(t);
        layer_norm_kernel<T><<<row_blocks(rows), kRowThreads, 0, stream>>>(x, rows, cols, w, b, eps, static_cast<T*>(y));
      },
      [&] { fail_bad_value("layer_norm: unsupported output dtype", static_cast<int64_t>(y_dtype)); });
  check_launch("layer_norm kernel");
}

void softmax_rows(float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  softmax_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(x, rows, cols);
  check_launch("softmax kernel");
}

}  // namespace gpt2q::cuda
