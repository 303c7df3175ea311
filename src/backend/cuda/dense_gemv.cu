// Dense 16-bit GEMV for a few rows over W [out, in] (dense_gemv.h), the
// structure of quant_gemv.cu's `vec` kernels with 16-bit weights: one warp
// per R output rows; each step a lane reads U 16-byte chunks (8 weights
// each) per row, all issued before the math, and the matching 8 activations
// of each of the MT rows (through L1: every warp re-reads x).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dense_gemv.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/linear_epilogue.cuh"
#include "backend/cuda/warp_reduce.cuh"

namespace gpt2q::cuda {

namespace {

using backend::Activation;

constexpr int kWarps = 4;  // warps per block: 128 threads

struct Params {
  const void* x;  // [rows, in] of T
  const void* w;  // [out, in] of T
  const void* bias;
  DType bias_dtype;
  void* y;  // [rows, out] of y_dtype
  DType y_dtype;
  int rows, in, out;
  Activation activation;
  bool accumulate;
};

template <typename T>
__device__ __forceinline__ void unpack8(const uint4& q, float (&v)[8]) {
  T e[8];
  memcpy(e, &q, 16);
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = to_float(e[i]);
}

template <typename T, int MT, int R, int U>
__global__ void __launch_bounds__(kWarps * 32) dense_gemv_kernel(const __grid_constant__ Params p) {
  const int lane = threadIdx.x & 31;
  const int j0 = (blockIdx.x * kWarps + static_cast<int>(threadIdx.x >> 5)) * R;
  if (j0 >= p.out) return;
  const int C = p.in / 8;  // 16-byte chunks per row
  const uint4* w = static_cast<const uint4*>(p.w);
  const uint4* x = static_cast<const uint4*>(p.x);
  float acc[R][MT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[r][m] = 0.0f;

  for (int cb = 0; cb < C; cb += 32 * U) {
    uint4 q[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = cb + 32 * u + lane, j = j0 + r;
        q[r][u] = make_uint4(0, 0, 0, 0);
        // Streaming load: each weight is read once per call; L1 keeps x.
        if (c < C && j < p.out) q[r][u] = __ldcs(w + static_cast<size_t>(j) * C + c);
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = cb + 32 * u + lane;
      if (c >= C) break;  // the row's end (diverges only in the last step)
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        // Rows past p.rows (MT is a power of two) re-read the last one; never stored.
        float xv[8];
        unpack8<T>(__ldg(x + static_cast<size_t>(min(m, p.rows - 1)) * C + c), xv);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wv[8];
          unpack8<T>(q[r][u], wv);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][m] = fmaf(xv[e], wv[e], acc[r][m]);
        }
      }
    }
  }

  reduce_and_finish(p, acc, j0, lane);
}

template <typename T, int MT>
void launch_rows(const Params& p, cudaStream_t s) {
  auto go = [&](auto kernel, int R) {
    const int warps = (p.out + R - 1) / R;
    kernel<<<(warps + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(p);
  };
  // quant_gemv's choice: 4 rows per warp for wide outputs (the LM head), 4
  // chunks per lane for rows longer than a warp's step, else 1.
  const int chunks = p.in / 8;
  if (p.out >= 8192) go(dense_gemv_kernel<T, MT, 4, 1>, 4);
  else if (chunks > 32) go(dense_gemv_kernel<T, MT, 1, 4>, 1);
  else go(dense_gemv_kernel<T, MT, 1, 1>, 1);
}

template <typename T>
void launch(const Params& p, cudaStream_t stream) {
  if (p.rows <= 1) launch_rows<T, 1>(p, stream);
  else if (p.rows <= 2) launch_rows<T, 2>(p, stream);
  else if (p.rows <= 4) launch_rows<T, 4>(p, stream);
  else launch_rows<T, 8>(p, stream);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

bool dense_gemv_supports(const backend::LinearArgs& a) {
  const bool is16 = a.x_dtype == DType::F16 || a.x_dtype == DType::BF16;
  return is16 && a.w_dtype == a.x_dtype && a.w_out_in && !a.w_bf16_packed && a.rows >= 1 &&
         a.rows <= kDenseGemvMaxRows && a.in >= 8 && a.in % 8 == 0 && a.in < (int64_t{1} << 30) && a.out >= 1 &&
         a.out < (int64_t{1} << 30) && aligned16(a.w) && aligned16(a.x) &&
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
