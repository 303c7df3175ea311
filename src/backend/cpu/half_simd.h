#pragma once
// Exact 16-bit -> fp32 conversions in AVX2 registers (F16C for fp16, a
// 16-bit shift for bf16), shared by the 16-bit tables and the 16-bit Linear.
// Both give the same values as core/half.h's scalar conversions.
#include <immintrin.h>

#include <cstdint>

#include "core/half.h"

namespace gpt2q::cpu {

// 8 consecutive 16-bit values as fp32.
inline __m256 load8_16bit(const uint16_t* p, bool bf16) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (!bf16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline float to_float_16bit(uint16_t v, bool bf16) { return bf16 ? bf16_to_float(v) : half_to_float(v); }

}  // namespace gpt2q::cpu
