#pragma once
// The epilogue our own linear kernels (quant_gemv.cu, dense_gemv.cu) apply
// to each finished fp32 sum, as cuBLASLt's epilogues do for the GEMM path:
// the bias (F32 or 16-bit), the activation on the biased sum (the forms of
// elementwise.cu: no cancellation), or the residual add into y, then one
// rounding to y's dtype. Device code only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/warp_reduce.cuh"
#include "backend/linear_args.h"

namespace gpt2q::cuda {

__device__ __forceinline__ float load_as_float(const void* p, DType t, size_t i) {
  if (t == DType::F32) return static_cast<const float*>(p)[i];
  if (t == DType::F16) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

__device__ __forceinline__ void store_from_float(void* p, DType t, size_t i, float v) {
  if (t == DType::F32) static_cast<float*>(p)[i] = v;
  else if (t == DType::F16) static_cast<__half*>(p)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

// Output (m, j) of y [rows, p.out]; P has bias, bias_dtype, y, y_dtype, out,
// activation and accumulate.
template <typename P>
__device__ __forceinline__ void finish_output(const P& p, int m, int j, float v) {
  if (p.bias) v += load_as_float(p.bias, p.bias_dtype, j);
  if (p.activation == backend::Activation::gelu_new) {
    const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    v = v / (1.0f + expf(-2.0f * u));
  } else if (p.activation == backend::Activation::gelu_erf) {
    v = v * (0.5f * erfcf(-v * 0.7071067811865476f));
  }
  const size_t i = static_cast<size_t>(m) * p.out + j;
  if (p.accumulate) v += load_as_float(p.y, p.y_dtype, i);
  store_from_float(p.y, p.y_dtype, i, v);
}

// A GEMV warp's sums, acc[r][m] for output j0 + r of activation row m, added
// over the lanes (warp_reduce_scatter: a fixed order) and each finished by
// one lane; outputs past p.out and rows past p.rows are not stored.
template <int R, int MT, typename P>
__device__ __forceinline__ void reduce_and_finish(const P& p, const float (&acc)[R][MT], int j0, int lane) {
  constexpr int V = R * MT;
  float v[V];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) v[r * MT + m] = acc[r][m];
  const float total = warp_reduce_scatter(v);
  constexpr int shift = kScatterShift<V>;
  if ((lane & ((1 << shift) - 1)) == 0) {
    const int idx = lane >> shift, r = idx / MT, m = idx % MT, j = j0 + r;
    if (j < p.out && m < p.rows) finish_output(p, m, j, total);
  }
}

}  // namespace gpt2q::cuda
