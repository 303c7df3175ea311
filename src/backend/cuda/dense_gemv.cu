// Dense 16-bit GEMV for a few rows over W [in, out] (dense_gemv.h).
//
// A block owns 16 output columns and all of k: its 256 threads are 2
// column threads (8 columns each, one 16-byte load of W per k) by 128
// slices of k (k = slice, slice + 128, ...). Each thread keeps MT x 8 fp32
// sums; the 16 slices of a warp are added by shuffles, the 8 warps' sums in
// shared memory in warp order, so the result does not depend on timing.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dense_gemv.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/linear_epilogue.cuh"

namespace gpt2q::cuda {

namespace {

using backend::Activation;

constexpr int kThreads = 256, kColumnsPerBlock = 16, kSlices = 128, kWarps = kThreads / 32;

struct Params {
  const void* x;  // [rows, in] of T
  const void* w;  // [in, out] of T
  const void* bias;
  DType bias_dtype;
  void* y;  // [rows, out] of y_dtype
  DType y_dtype;
  int rows, in, out;
  Activation activation;
  bool accumulate;
};

template <typename T, int MT>
__global__ void __launch_bounds__(kThreads) dense_gemv_kernel(const Params p) {
  __shared__ float partial[kWarps][kColumnsPerBlock][MT];
  const int tx = threadIdx.x & 1, slice = threadIdx.x >> 1;
  const int c = blockIdx.x * kColumnsPerBlock + tx * 8;
  const bool valid = c < p.out;  // out % 8 == 0: all 8 columns or none
  const T* w = static_cast<const T*>(p.w);
  const T* x = static_cast<const T*>(p.x);
  float acc[MT][8];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[m][e] = 0.0f;
  if (valid) {
#pragma unroll 4
    for (int k = slice; k < p.in; k += kSlices) {
      // Read once per call: a streaming load keeps L1 for x.
      const uint4 q = __ldcs(reinterpret_cast<const uint4*>(w + static_cast<size_t>(k) * p.out + c));
      T wv[8];
      memcpy(wv, &q, 16);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        // Rows past p.rows (MT is a power of two) re-read the last one; never stored.
        const float xv = to_float(x[static_cast<size_t>(min(m, p.rows - 1)) * p.in + k]);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[m][e] = fmaf(xv, to_float(wv[e]), acc[m][e]);
      }
    }
  }
  // The warp's 16 slices (lane bits 1..4), then the 8 warps in order.
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int e = 0; e < 8; ++e)
#pragma unroll
      for (int off = 2; off < 32; off *= 2) acc[m][e] += __shfl_xor_sync(0xffffffffu, acc[m][e], off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane < 2) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int e = 0; e < 8; ++e) partial[warp][lane * 8 + e][m] = acc[m][e];
  }
  __syncthreads();
  if (threadIdx.x < kColumnsPerBlock * MT) {
    const int col = threadIdx.x % kColumnsPerBlock, m = threadIdx.x / kColumnsPerBlock;
    const int j = blockIdx.x * kColumnsPerBlock + col;
    if (j < p.out && m < p.rows) {
      float v = 0.0f;
#pragma unroll
      for (int wi = 0; wi < kWarps; ++wi) v += partial[wi][col][m];
      finish_output(p, m, j, v);
    }
  }
}

template <typename T>
void launch(const Params& p, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((p.out + kColumnsPerBlock - 1) / kColumnsPerBlock);
  if (p.rows <= 1) dense_gemv_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(p);
  else if (p.rows <= 2) dense_gemv_kernel<T, 2><<<blocks, kThreads, 0, stream>>>(p);
  else if (p.rows <= 4) dense_gemv_kernel<T, 4><<<blocks, kThreads, 0, stream>>>(p);
  else dense_gemv_kernel<T, 8><<<blocks, kThreads, 0, stream>>>(p);
}

}  // namespace

bool dense_gemv_supports(const backend::LinearArgs& a) {
  const bool is16 = a.x_dtype == DType::F16 || a.x_dtype == DType::BF16;
  return is16 && a.w_dtype == a.x_dtype && !a.w_out_in && !a.w_bf16_packed && a.rows >= 1 &&
         a.rows <= kDenseGemvMaxRows && a.in >= 1 && a.in < (int64_t{1} << 30) && a.out % 8 == 0 &&
         a.out < (int64_t{1} << 30) && reinterpret_cast<uintptr_t>(a.w) % 16 == 0 &&
         !(a.epilogue.accumulate && a.epilogue.activation != Activation::none);
}

void dense_gemv(const backend::LinearArgs& a, cudaStream_t stream) {
  if (!dense_gemv_supports(a)) fail_bad_value("dense_gemv: unsupported arguments, rows", a.rows);
  Params p{};
  p.x = a.x;
  p.w = a.w;
  p.bias = a.bias;
  p.bias_dtype = a.bias_dtype;
  p.y = a.y;
  p.y_dtype = a.y_dtype;
  p.rows = static_cast<int>(a.rows);
  p.in = static_cast<int>(a.in);
  p.out = static_cast<int>(a.out);
  p.activation = a.epilogue.activation;
  p.accumulate = a.epilogue.accumulate;
  if (a.x_dtype == DType::F16) launch<__half>(p, stream);
  else launch<__nv_bfloat16>(p, stream);
  check_launch("dense_gemv kernel");
}

}  // namespace gpt2q::cuda
