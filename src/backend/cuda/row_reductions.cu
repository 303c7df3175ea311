// Row-wise kernels: LayerNorm and softmax, one thread block per row (a
// grid-stride loop over rows when there are more rows than blocks), the
// block's threads striding over the columns; LayerNorm of rows up to 1024
// wide (GPT-2's) one warp per row.
#include <cmath>
#include <cstring>
#include <type_traits>

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
    const RowStats st = block_row_stats(xr, cols, eps, scratch);
    const double mean = st.mean, rstd = st.rstd;
    T* yr = y + r * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] = from_float<T>(static_cast<float>((xr[c] - mean) * rstd * w[c] + b[c]));
  }
}

// The same LayerNorm, one warp per row for rows of up to 1024 columns
// (cols % 128 == 0: GPT-2's 768 and 1024): the row lives in registers
// (float4 loads), the two sums are warp shuffles of doubles, no barrier and
// no shared memory. The block-per-row kernel above spent ~6 us per launch on
// a 768-wide row (device run 10, ncu), 25 launches per batch-1 token; this
// one has the same double statistics and the same output expression, so it
// gives the same values (only the order of the double sums differs). Each
// lane reads its whole share before writing: y may alias x.
constexpr int kWarpRowsPerBlock = 4;

template <typename T, int N4>
__global__ void __launch_bounds__(kWarpRowsPerBlock * 32)
    layer_norm_warp_kernel(const float* x, int64_t rows, int cols, const float* w, const float* b, float eps, T* y) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t{blockIdx.x} * kWarpRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const float4* xr = reinterpret_cast<const float4*>(x + r * cols);
  float4 v[N4];
  double sum = 0.0;
#pragma unroll
  for (int i = 0; i < N4; ++i) {
    v[i] = xr[lane + 32 * i];
    sum += static_cast<double>(v[i].x) + static_cast<double>(v[i].y) + static_cast<double>(v[i].z) +
           static_cast<double>(v[i].w);
  }
  const double mean = warp_sum(sum) / static_cast<double>(cols);
  double sq = 0.0;
#pragma unroll
  for (int i = 0; i < N4; ++i) {
    const double d0 = v[i].x - mean, d1 = v[i].y - mean, d2 = v[i].z - mean, d3 = v[i].w - mean;
    sq += d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3;
  }
  const double rstd = 1.0 / sqrt(warp_sum(sq) / static_cast<double>(cols) + static_cast<double>(eps));
  const float4* w4 = reinterpret_cast<const float4*>(w);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  T* yr = y + r * cols;
#pragma unroll
  for (int i = 0; i < N4; ++i) {
    const int q = lane + 32 * i;
    const float4 wq = __ldg(w4 + q), bq = __ldg(b4 + q);
    const float o0 = static_cast<float>((v[i].x - mean) * rstd * wq.x + bq.x);
    const float o1 = static_cast<float>((v[i].y - mean) * rstd * wq.y + bq.y);
    const float o2 = static_cast<float>((v[i].z - mean) * rstd * wq.z + bq.z);
    const float o3 = static_cast<float>((v[i].w - mean) * rstd * wq.w + bq.w);
    if constexpr (std::is_same_v<T, float>) {
      reinterpret_cast<float4*>(yr)[q] = make_float4(o0, o1, o2, o3);
    } else {
      const T h[4] = {from_float<T>(o0), from_float<T>(o1), from_float<T>(o2), from_float<T>(o3)};
      uint2 packed;
      memcpy(&packed, h, 8);
      reinterpret_cast<uint2*>(yr)[q] = packed;
    }
  }
}

template <typename T, int N4>
void launch_layer_norm_warp(const float* x, int64_t rows, int cols, const float* w, const float* b, float eps, T* y,
                            cudaStream_t stream) {
  const int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
  layer_norm_warp_kernel<T, N4>
      <<<static_cast<unsigned>(blocks), kWarpRowsPerBlock * 32, 0, stream>>>(x, rows, cols, w, b, eps, y);
}

// True when the warp kernel ran (cols a multiple of 128 up to 1024, aligned rows).
template <typename T>
bool layer_norm_warp(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, T* y,
                     cudaStream_t stream) {
  const auto aligned = [](const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (cols % 128 != 0 || cols > 1024 || rows > (int64_t{1} << 32) || !aligned(x, 16) || !aligned(w, 16) ||
      !aligned(b, 16) || !aligned(y, 4 * sizeof(T)))
    return false;
  const int c = static_cast<int>(cols);
  switch (c / 128) {
    case 1: launch_layer_norm_warp<T, 1>(x, rows, c, w, b, eps, y, stream); break;
    case 2: launch_layer_norm_warp<T, 2>(x, rows, c, w, b, eps, y, stream); break;
    case 3: launch_layer_norm_warp<T, 3>(x, rows, c, w, b, eps, y, stream); break;
    case 4: launch_layer_norm_warp<T, 4>(x, rows, c, w, b, eps, y, stream); break;
    case 5: launch_layer_norm_warp<T, 5>(x, rows, c, w, b, eps, y, stream); break;
    case 6: launch_layer_norm_warp<T, 6>(x, rows, c, w, b, eps, y, stream); break;
    case 7: launch_layer_norm_warp<T, 7>(x, rows, c, w, b, eps, y, stream); break;
    default: launch_layer_norm_warp<T, 8>(x, rows, c, w, b, eps, y, stream); break;
  }
  return true;
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
        if (!layer_norm_warp<T>(x, rows, cols, w, b, eps, static_cast<T*>(y), stream))
          layer_norm_kernel<T><<<row_blocks(rows), kRowThreads, 0, stream>>>(x, rows, cols, w, b, eps,
                                                                              static_cast<T*>(y));
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
