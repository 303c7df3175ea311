#pragma once
// The arguments of the linear-layer kernels, shared by every backend
// (cpu/linear_ops.h, cuda/cuda_kernels.h) so that ops.cpp fills one struct
// for any device, as attention_args.h does for attention. Pointers are the
// backend's own memory. Plain data only: CUDA translation units include it.
//
// A product y = x · Wᵀ (W [out, in]) or x · W (W [in, out], GPT-2's Conv1D
// layout), plus bias, then an epilogue:
//   activation  y = act(x·W + b)            (GELU into the matmul)
//   accumulate  y += x·W + b                (the residual add into the matmul)
#include <cstdint>

#include "backend/quant_format.h"
#include "core/dtype.h"

namespace gpt2q::backend {

enum class Activation : uint8_t { none, gelu_new, gelu_erf };

struct Epilogue {
  Activation activation = Activation::none;
  bool accumulate = false;  // y += result (y keeps its dtype); not with an activation
};

struct LinearArgs {
  const void* x = nullptr;  // [rows, in]
  DType x_dtype = DType::F32;
  int64_t rows = 0, in = 0, out = 0;
  const void* w = nullptr;  // [in, out], or [out, in] when w_out_in
  DType w_dtype = DType::F32;
  bool w_out_in = false;
  // CPU only: w is a dense weight [in, out] rounded to bf16 and packed by
  // cpu::bf16_linear_pack_weight, multiplied with compute dtype bf16
  // (backend/cpu/bf16_linear.h). w_dtype is BF16, w_out_in false.
  bool w_bf16_packed = false;
  // [out] or null. F32, or y's dtype: cuBLASLt adds a bias of the output's
  // type, so a layer with 16-bit outputs holds a 16-bit copy; another dtype
  // is converted per call.
  const void* bias = nullptr;
  DType bias_dtype = DType::F32;
  void* y = nullptr;  // [rows, out]
  DType y_dtype = DType::F32;
  Epilogue epilogue;
};

// y = x · W'ᵀ (+ bias) for a packed weight W' [out, in] (quant_format.h).
struct QuantLinearArgs {
  const void* x = nullptr;  // [rows, in]
  DType x_dtype = DType::F32;
  int64_t rows = 0;
  qformat::WeightView w;
  const void* bias = nullptr;  // [out] or null, as LinearArgs::bias
  DType bias_dtype = DType::F32;
  void* y = nullptr;  // [rows, out]
  DType y_dtype = DType::F32;
  Epilogue epilogue;
  // The arithmetic: F32, or BF16 / F16 (16-bit operands, fp32 sums; the CPU
  // has BF16 for int8_affine and blockwise4 at 16 rows and more).
  DType compute = DType::F32;
  float llm_int8_threshold = 6.0f;      // llm_int8: outlier threshold, 0 = none
  bool llm_int8_fp32_epilogue = false;  // llm_int8: the int8 part in fp32 instead of bnb's fp16
};

// out[i, :] (= or +=) table[idx[i], :] in fp32, for tables of any kind.
struct GatherArgs {
  const void* table = nullptr;  // [rows, cols] F32 / F16 / BF16, unless `packed`
  DType table_dtype = DType::F32;
  const qformat::WeightView* packed = nullptr;  // a quantized table instead
  int64_t table_rows = 0, cols = 0;
  const int64_t* idx = nullptr;  // [n], each in [0, table_rows) (checked by the caller)
  int64_t n = 0;
  float* out = nullptr;  // [n, cols]
  bool accumulate = false;
};

}  // namespace gpt2q::backend
