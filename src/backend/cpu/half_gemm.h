#pragma once
// Products and row gathers with 16-bit (F16 / BF16) weights kept as stored:
// every value is converted exactly to fp32 (core/half.h; F16C or a shift in
// registers, backend/cpu/half_simd.h), so each result is an fp32 product of
// the converted weight and only the summation order differs from sgemm on an
// fp32 copy. Weights are raw 16-bit patterns; `bf16` says which kind.
//   few rows (decoding)  one pass over the weight, converted in registers and
//                        fused with the products
//   more rows            blocks of the weight converted into a buffer of the
//                        calling thread, one sgemm each
#include <cstdint>

#include "core/dtype.h"

namespace gpt2q::cpu {

// Up to this many rows, the fused kernels.
inline constexpr int64_t kHalfLinearFusedMaxRows = 8;
inline constexpr int64_t kHalfTableFusedMaxRows = 4;

// y[rows, out] = x[rows, in] · W[in, out] + bias[out] (bias may be null),
// W in GPT-2's Conv1D layout.
void linear_16bit(const float* x, int64_t rows, int64_t in, const uint16_t* w, bool bf16, const float* bias,
                  int64_t out, float* y);
// c[m, n] = a[m, k] · b[n, k]ᵀ (a table used as a weight: the tied LM head).
void matmul_nt_16bit(const float* a, int64_t m, int64_t k, const uint16_t* b, bool bf16, int64_t n, float* c);
// out[i, :] = table[idx[i], :] (or += with accumulate), converted to fp32.
void gather_rows_16bit(const uint16_t* table, bool bf16, int64_t cols, const int64_t* idx, int64_t n, float* out,
                       bool accumulate);
// out[i] = in[i] converted between F32, F16 and BF16 (exact widening,
// narrowing to nearest even).
void convert_dtype(const void* in, DType in_dtype, void* out, DType out_dtype, int64_t n);
// The same for an fp32 table.
void gather_rows_f32(const float* table, int64_t cols, const int64_t* idx, int64_t n, float* out, bool accumulate);

}  // namespace gpt2q::cpu
