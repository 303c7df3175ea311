#pragma once
// LLM.int8() as bitsandbytes' Linear8bitLt runs it for inference
// (bitsandbytes/autograd/_functions.py MatMul8bitLt, backends/*/ops.py,
// csrc/cuda/int8.cu). docs/quantization.md has every formula and why.
//
// Weight [out, in]: rounded to fp16, then per output row
//   SCB[j] = max_k |w16[j, k]|,  CB[j, k] = round(w16[j, k] · (127 / SCB[j]))   (int8)
// Activations x [rows, in], per call: x16 = fp16(x);
//   outlier columns = { k : |x16[i, k]| >= threshold for some i }  (threshold > 0)
//   SCA[i] = max over non-outlier elements of |x16[i, k]|
//   CA[i, k] = round(x16[i, k] · (127 / SCA[i])), and 0 in outlier columns
// Output:
//   acc = CA · CBᵀ (int32, exact)
//   int8 part  p[i, j] = fma((float(acc)·SCA[i])·SCB[j], 6.200012e-05f, ·)   (≈ 1/127²)
//   outlier part o[i, j] = Σ_{k outlier} x[i, k] · ((CB[j, k]·SCB[j]) · (1/127)),  x unrounded
//   y = p (+ bias) + o
// round() is half to even. 127 / SCB is an IEEE division (bnb's CUDA kernel
// uses the approximate __fdividef; its CPU backend the exact one).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cpu/isa.h"
#include "backend/cpu/quant_llm_int8.h"
#include "backend/quant_format.h"

namespace gpt2q::quant {

using cpu::Isa;
using cpu::best_isa;
// The scale constant of bnb's CUDA epilogue (kdequant_mm_int32_fp16) and the
// constant of int8_vectorwise_dequant, used for the outlier weight columns.
using qformat::kInv127;
using qformat::kLlmInt8DequantConst;

// How the int8 part is rounded. bnb's CUDA kernel always writes it as fp16
// (and, for an fp32 layer, adds the bias to that fp16 tensor); `fp32` keeps
// every step in fp32.
enum class LlmInt8Epilogue { cuda_fp16, fp32 };

struct LlmInt8Options {
  float threshold = 6.0f;  // transformers' llm_int8_threshold default; 0 turns the decomposition off
  LlmInt8Epilogue epilogue = LlmInt8Epilogue::cuda_fp16;
};

// Row-wise absmax int8 of fp16-rounded values: bnb's int8_vectorwise_quant
// (backend/cpu/quant_llm_int8.h).
using cpu::Int8Rows;
inline Int8Rows quantize_rows_int8(const float* x, int64_t rows, int64_t cols, float threshold) {
  return cpu::llm_int8_quantize_rows(x, rows, cols, threshold);
}

struct LlmInt8Weight {
  int64_t out = 0, in = 0;
  std::vector<int8_t> cb;            // [out, in]
  std::vector<float> scb;            // [out]
  std::vector<int32_t> cb_row_sums;  // [out], Σ_k CB[j, k]: lets the VNNI kernel use unsigned bytes
  // Bytes held: CB + SCB + row sums.
  size_t bytes() const;
};
// The weight's parts as a view for the kernels (host memory, borrowed from w).
qformat::WeightView view_of(const LlmInt8Weight& w);

// Throws gpt2q::Error on non-finite weights.
LlmInt8Weight quantize_llm_int8(const float* w, int64_t out, int64_t in);

// Weight column k of output j as the outlier path sees it.
inline float llm_int8_dequantized_weight(const LlmInt8Weight& w, int64_t j, int64_t k) {
  return (static_cast<float>(w.cb[j * w.in + k]) * w.scb[j]) * kInv127;
}

// y[rows, out] = LLM.int8 product of x[rows, in] (+ bias). The reference uses
// scalar int32 dot products; the fast one the int8 kernels. Both give the same
// bits: every step but the int32 sums is done identically.
void llm_int8_matmul_reference(const LlmInt8Weight& w, const float* bias, const float* x, int64_t rows,
                               const LlmInt8Options& opt, float* y);
void llm_int8_matmul(const LlmInt8Weight& w, const float* bias, const float* x, int64_t rows,
                     const LlmInt8Options& opt, float* y, Isa isa = best_isa());

// The epilogue alone, for tests: acc[rows, out] int32 -> y (no outlier part).
void llm_int8_epilogue(const int32_t* acc, const float* sca, const LlmInt8Weight& w, const float* bias,
                       int64_t rows, LlmInt8Epilogue epilogue, float* y);

}  // namespace gpt2q::quant
