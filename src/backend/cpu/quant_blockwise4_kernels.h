#pragma once
// Fused 4-bit GEMM: y[i, j] = Σ_k x[i, k] · table[code[j, k]] · absmax[block of (j, k)].
// Codes are decoded in registers by a 16-entry table lookup (AVX-512:
// permutexvar on one zmm; AVX2: two 8-entry permutes and a blend) and each
// decoded weight is table·absmax in fp32, exactly the dequantized value.
// x is passed split into even and odd elements so the high and low nibbles of
// a byte meet their activations without shuffles.
// Requires in % blocksize == 0 and blocksize % 32 == 0.
#include <cstdint>

#include "backend/cpu/isa.h"

namespace gpt2q::cpu {

struct Blockwise4Gemm {
  const float* x_even;    // [rows, in / 2]: x[i, 2m]
  const float* x_odd;     // [rows, in / 2]: x[i, 2m + 1]
  int64_t rows;
  const uint8_t* packed;  // [out · in / 2]
  const float* absmax;    // [out · in / blocksize]
  const float* table;     // 16 values
  int64_t in, out, blocksize;
  float* y;               // [rows, out], overwritten (no bias)
};
void blockwise4_gemm(const Blockwise4Gemm& g, Isa isa);

// Rows j0..j1 of the dequantized weight (table[code] · absmax, exactly) into
// dst [j1 - j0, in], each row in split order: the even elements k = 0, 2, ...
// in its first half, the odd ones in its second (the order of x_even | x_odd,
// which needs no shuffles here). Same requirements as blockwise4_gemm; the
// x, rows and y fields are not used.
void blockwise4_decode_rows(const Blockwise4Gemm& g, int64_t j0, int64_t j1, float* dst, Isa isa);

namespace detail {
void blockwise4_gemm_avx512(const Blockwise4Gemm& g, int64_t j0, int64_t j1);
void blockwise4_decode_rows_avx512(const Blockwise4Gemm& g, int64_t j0, int64_t j1, float* dst);
}

}  // namespace gpt2q::cpu
