#pragma once
// The element types of activations and weights (F32, F16, BF16) in device
// code: loads to fp32 and stores from fp32 (round to nearest even), and
// dispatch from a runtime DType to a template instance. Device code only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/dtype.h"

namespace gpt2q::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls fn(T{}) with T the C++ type of `dtype` (F32, F16 or BF16); another
// dtype reaches `otherwise()`.
template <typename Fn, typename Otherwise>
void with_float_type(DType dtype, Fn&& fn, Otherwise&& otherwise) {
  switch (dtype) {
    case DType::F32: fn(float{}); return;
    case DType::F16: fn(__half{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    default: otherwise(); return;
  }
}

}  // namespace gpt2q::cuda
