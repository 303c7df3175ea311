#include "backend/cpu/quant_blockwise4_kernels.h"

#include <immintrin.h>

#include <algorithm>

#include "core/error.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::cpu {
namespace {

constexpr int64_t kChannelsPerTask = 32;
constexpr int64_t kRowTile = 4;

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void gemm_scalar(const Blockwise4Gemm& g, int64_t j0, int64_t j1) {
  const int64_t half = g.in / 2, bytes_per_block = g.blocksize / 2;
  for (int64_t i = 0; i < g.rows; ++i) {
    const float* xe = g.x_even + i * half;
    const float* xo = g.x_odd + i * half;
    for (int64_t j = j0; j < j1; ++j) {
      const uint8_t* p = g.packed + j * half;
      const float* am = g.absmax + j * (g.in / g.blocksize);
      float acc = 0.0f;
      for (int64_t t = 0; t < half; ++t) {
        const float a = am[t / bytes_per_block];
        acc += xe[t] * (g.table[p[t] >> 4] * a);
        acc += xo[t] * (g.table[p[t] & 0x0f] * a);
      }
      g.y[i * g.out + j] = acc;
    }
  }
}

// 8 table entries per ymm; bit 3 of the index picks the half.
inline __m256 lookup16(__m256i idx, __m256 lo_half, __m256 hi_half) {
  __m256 from_lo = _mm256_permutevar8x32_ps(lo_half, idx);
  __m256 from_hi = _mm256_permutevar8x32_ps(hi_half, idx);
  return _mm256_blendv_ps(from_lo, from_hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

void gemm_avx2(const Blockwise4Gemm& g, int64_t j0, int64_t j1) {
  const int64_t half = g.in / 2, bytes_per_block = g.blocksize / 2, blocks_per_row = g.in / g.blocksize;
  const __m256 tab_lo = _mm256_loadu_ps(g.table), tab_hi = _mm256_loadu_ps(g.table + 8);
  for (int64_t i0 = 0; i0 < g.rows; i0 += kRowTile) {
    const int64_t nr = std::min(kRowTile, g.rows - i0);
    for (int64_t j = j0; j < j1; ++j) {
      __m256 acc[kRowTile] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int64_t b = 0; b < blocks_per_row; ++b) {
        const __m256 a = _mm256_set1_ps(g.absmax[j * blocks_per_row + b]);
        const int64_t t0 = b * bytes_per_block;
        for (int64_t t = t0; t < t0 + bytes_per_block; t += 8) {
          __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g.packed + j * half + t)));
          __m256 we = _mm256_mul_ps(lookup16(_mm256_srli_epi32(v, 4), tab_lo, tab_hi), a);
          __m256 wo = _mm256_mul_ps(lookup16(v, tab_lo, tab_hi), a);
          for (int64_t r = 0; r < nr; ++r) {
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(g.x_even + (i0 + r) * half + t), we, acc[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(g.x_odd + (i0 + r) * half + t), wo, acc[r]);
          }
        }
      }
      for (int64_t r = 0; r < nr; ++r) g.y[(i0 + r) * g.out + j] = hsum(acc[r]);
    }
  }
}

void decode_rows_scalar(const Blockwise4Gemm& g, int64_t j0, int64_t j1, float* dst) {
  const int64_t half = g.in / 2, bytes_per_block = g.blocksize / 2, blocks_per_row = g.in / g.blocksize;
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t* p = g.packed + j * half;
    float* d = dst + (j - j0) * g.in;
    for (int64_t t = 0; t < half; ++t) {
      const float a = g.absmax[j * blocks_per_row + t / bytes_per_block];
      d[t] = g.table[p[t] >> 4] * a;
      d[half + t] = g.table[p[t] & 0x0f] * a;
    }
  }
}

void decode_rows_avx2(const Blockwise4Gemm& g, int64_t j0, int64_t j1, float* dst) {
  const int64_t half = g.in / 2, bytes_per_block = g.blocksize / 2, blocks_per_row = g.in / g.blocksize;
  const __m256 tab_lo = _mm256_loadu_ps(g.table), tab_hi = _mm256_loadu_ps(g.table + 8);
  for (int64_t j = j0; j < j1; ++j) {
    float* d = dst + (j - j0) * g.in;
    for (int64_t t = 0; t < half; t += 8) {  // 8 bytes never straddle a block (blocksize % 32 == 0)
      const __m256 a = _mm256_set1_ps(g.absmax[j * blocks_per_row + t / bytes_per_block]);
      const __m256i v =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g.packed + j * half + t)));
      _mm256_storeu_ps(d + t, _mm256_mul_ps(lookup16(_mm256_srli_epi32(v, 4), tab_lo, tab_hi), a));
      _mm256_storeu_ps(d + half + t, _mm256_mul_ps(lookup16(v, tab_lo, tab_hi), a));
    }
  }
}

}  // namespace

void blockwise4_decode_rows(const Blockwise4Gemm& g, int64_t j0, int64_t j1, float* dst, Isa isa) {
  require_isa(isa);
  GPT2Q_CHECK(g.blocksize % 32 == 0 && g.in % g.blocksize == 0, "blockwise4_decode_rows: in {} blocksize {}", g.in,
              g.blocksize);
  switch (isa) {
    case Isa::scalar: decode_rows_scalar(g, j0, j1, dst); break;
    case Isa::avx2: decode_rows_avx2(g, j0, j1, dst); break;
    case Isa::avx512: detail::blockwise4_decode_rows_avx512(g, j0, j1, dst); break;
  }
}

void blockwise4_gemm(const Blockwise4Gemm& g, Isa isa) {
  require_isa(isa);
  GPT2Q_CHECK(g.blocksize % 32 == 0 && g.in % g.blocksize == 0, "blockwise4_gemm: in {} blocksize {}", g.in,
              g.blocksize);
  const int64_t chunks = (g.out + kChannelsPerTask - 1) / kChannelsPerTask;
  const int64_t work = g.rows * g.out * g.in;
#pragma omp parallel for schedule(static) if (work > (1 << 18))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t j0 = c * kChannelsPerTask, j1 = std::min(g.out, j0 + kChannelsPerTask);
    switch (isa) {
      case Isa::scalar: gemm_scalar(g, j0, j1); break;
      case Isa::avx2: gemm_avx2(g, j0, j1); break;
      case Isa::avx512: detail::blockwise4_gemm_avx512(g, j0, j1); break;
    }
  }
}

}  // namespace gpt2q::cpu
