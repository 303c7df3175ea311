#pragma once
// int8 matrix kernels shared by int8_affine and llm_int8. Both compute, for
// every row i of the activations and output channel j, a dot product along
// `in` with the weight row j ([out, in], nn.Linear order).
//
// Dispatchers thread over output channels (OpenMP); the per-ISA kernels work
// on a range [j0, j1). The AVX-512 ones live in int8_kernels_avx512.cpp and
// take only plain structs and pointers, so nothing inline is shared with code
// built without AVX-512.
#include <cstdint>

#include "backend/cpu/isa.h"

namespace gpt2q::cpu {

// y[i, j] = scale[j] · Σ_k x[i, k]·(q[j, k] - zero_point[j]) (+ bias[j]), fp32.
struct Int8WeightGemm {
  const float* x;
  int64_t rows;
  const int8_t* q;
  const int32_t* zero_point;  // [out]
  const float* scale;         // [out]
  const float* bias;          // [out] or null
  int64_t in, out;
  float* y;
};
void int8_weight_gemm(const Int8WeightGemm& g, Isa isa);
// Rows j0..j1 of the dequantized weight, (q - zero_point) · scale exactly
// (dequantize_int8's values), into dst [j1 - j0, in]. Uses q, zero_point,
// scale and in of `g`.
void int8_decode_rows(const Int8WeightGemm& g, int64_t j0, int64_t j1, float* dst, Isa isa);

// c[i, j] = Σ_k a[i, k]·b[j, k] in int32, exact while |c| < 2^31 (any
// in < 2^31 / (255·128)). The VNNI kernel feeds a + 128 as unsigned bytes and
// subtracts 128·b_row_sums[j], where b_row_sums[j] = Σ_k b[j, k].
struct Int8Gemm {
  const int8_t* a;
  int64_t rows;
  const int8_t* b;
  const int32_t* b_row_sums;
  int64_t in, out;
  int32_t* c;
};
void int8_gemm_i32(const Int8Gemm& g, Isa isa);

namespace detail {
void int8_weight_gemm_avx512(const Int8WeightGemm& g, int64_t j0, int64_t j1);
void int8_decode_rows_avx512(const Int8WeightGemm& g, int64_t j0, int64_t j1, float* dst);
// a_biased[i, k] = a[i, k] + 128 as unsigned bytes.
void int8_gemm_i32_avx512(const uint8_t* a_biased, const Int8Gemm& g, int64_t j0, int64_t j1);
}  // namespace detail

}  // namespace gpt2q::cpu
