#pragma once
// Products, gathers and decodes of packed quantized weights on the CPU, from
// a qformat::WeightView of host memory (backend/quant_format.h). ops::
// quant_linear and ops::gather_rows dispatch here for CPU tensors; quant/
// calls the same functions for its formats' own products.
//
// Each product is "dequantize, then an fp32 matmul", with every decoded
// weight bit for bit the format's value; only the fp32 summation order
// differs from the scalar reference (quant_linear_reference):
//   fewer than kTiledGemmMinRows rows   fused kernels: codes decoded in
//                                       registers, one pass over the weight
//   more rows                           decoded tiles and sgemm (dequant_gemm.h)
// compute BF16 (int8_affine and blockwise4, from kTiledGemmMinRows rows): x
// and each decoded weight rounded to bf16, products summed in fp32, as
// bitsandbytes with a bfloat16 compute dtype (int8: the integer codes, exact
// in bf16, then the scale). llm_int8 runs LLM.int8() (quant_llm_int8.h).
#include <cstdint>

#include "backend/cpu/isa.h"
#include "backend/quant_format.h"
#include "core/dtype.h"

namespace gpt2q::cpu {

struct QuantLinearOptions {
  DType compute = DType::F32;          // F32 or BF16
  float llm_int8_threshold = 6.0f;     // 0: no outlier decomposition
  bool llm_int8_fp32_epilogue = false; // keep LLM.int8's int8 part in fp32 instead of bnb's fp16
};

// y[rows, out] = x[rows, in] · W'ᵀ (+ bias[out] when not null), overwriting y.
void quant_linear(const qformat::WeightView& w, const float* x, int64_t rows, const float* bias, float* y,
                  const QuantLinearOptions& options = {}, Isa isa = best_isa());
// The scalar reference: the weight dequantized, then fp32 dot products in
// index order (llm_int8: scalar int32 dot products and the reference's
// epilogue). compute is not used (the reference is fp32).
void quant_linear_reference(const qformat::WeightView& w, const float* x, int64_t rows, const float* bias, float* y,
                            const QuantLinearOptions& options = {});
// The whole dequantized weight W'[out, in] in fp32.
void quant_dequantize(const qformat::WeightView& w, float* out_in);
// out[i, :] = W'[idx[i], :] (or += with accumulate); idx in [0, out).
void quant_gather_rows(const qformat::WeightView& w, const int64_t* idx, int64_t n, float* out, bool accumulate);

}  // namespace gpt2q::cpu
