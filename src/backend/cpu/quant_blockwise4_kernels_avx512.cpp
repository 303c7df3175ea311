// AVX-512 fused 4-bit GEMM; built with -mavx512* and reached only through
// blockwise4_gemm() after a CPU check. Intrinsics and TU-local templates
// only, so no code is shared with translation units built for AVX2.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsic headers seed results with _mm512_undefined_*()
// (`__Y = __Y`), which -Wmaybe-uninitialized reports at every inlined call
// (GCC bug 105593). The warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "backend/cpu/quant_blockwise4_kernels.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::cpu::detail {
namespace {

// Register tile: R activation rows × C output channels = R·C accumulators.
// Each decoded weight vector is reused R times and each activation load C
// times, which is what keeps the kernel from being bound by loads.
constexpr int kRows = 4, kChannels = 4;

inline float hsum(__m512 v) {  // fixed order, lane 0 first
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += t[i];
  return s;
}

template <int R, int C>
void tile(const Blockwise4Gemm& g, const __m512 tab, int64_t i0, int64_t j0) {
  const int64_t half = g.in / 2, bytes_per_block = g.blocksize / 2, blocks_per_row = g.in / g.blocksize;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks_per_row; ++b) {
    __m512 scale[C];
    for (int c = 0; c < C; ++c) scale[c] = _mm512_set1_ps(g.absmax[(j0 + c) * blocks_per_row + b]);
    const int64_t t0 = b * bytes_per_block;
    for (int64_t t = t0; t < t0 + bytes_per_block; t += 16) {
      __m512 we[C], wo[C];
      for (int c = 0; c < C; ++c) {
        // 16 bytes -> 16 lanes; permutexvar reads only the low 4 bits of each
        // index, so the low nibble needs no mask. table·absmax is exactly the
        // dequantized weight.
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.packed + (j0 + c) * half + t)));
        we[c] = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab), scale[c]);
        wo[c] = _mm512_mul_ps(_mm512_permutexvar_ps(v, tab), scale[c]);
      }
      for (int r = 0; r < R; ++r) {
        const __m512 xe = _mm512_loadu_ps(g.x_even + (i0 + r) * half + t);
        const __m512 xo = _mm512_loadu_ps(g.x_odd + (i0 + r) * half + t);
        for (int c = 0; c < C; ++c) {
          acc[r][c] = _mm512_fmadd_ps(xe, we[c], acc[r][c]);
          acc[r][c] = _mm512_fmadd_ps(xo, wo[c], acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) g.y[(i0 + r) * g.out + j0 + c] = hsum(acc[r][c]);
}

template <int R>
void tile_rows(const Blockwise4Gemm& g, const __m512 tab, int64_t i0, int64_t j0, int64_t nc) {
  switch (nc) {
    case 4: tile<R, 4>(g, tab, i0, j0); break;
    case 3: tile<R, 3>(g, tab, i0, j0); break;
    case 2: tile<R, 2>(g, tab, i0, j0); break;
    default: tile<R, 1>(g, tab, i0, j0); break;
  }
}

}  // namespace

void blockwise4_gemm_avx512(const Blockwise4Gemm& g, int64_t j0, int64_t j1) {
  const __m512 tab = _mm512_loadu_ps(g.table);
  for (int64_t i0 = 0; i0 < g.rows; i0 += kRows) {
    const int64_t nr = g.rows - i0 < kRows ? g.rows - i0 : kRows;
    for (int64_t j = j0; j < j1; j += kChannels) {
      const int64_t nc = j1 - j < kChannels ? j1 - j : kChannels;
      switch (nr) {
        case 4: tile_rows<4>(g, tab, i0, j, nc); break;
        case 3: tile_rows<3>(g, tab, i0, j, nc); break;
        case 2: tile_rows<2>(g, tab, i0, j, nc); break;
        default: tile_rows<1>(g, tab, i0, j, nc); break;
      }
    }
  }
}

void blockwise4_decode_rows_avx512(const Blockwise4Gemm& g, int64_t j0, int64_t j1, float* dst) {
  const int64_t half = g.in / 2, bytes_per_block = g.blocksize / 2, blocks_per_row = g.in / g.blocksize;
  const __m512 tab = _mm512_loadu_ps(g.table);
  for (int64_t j = j0; j < j1; ++j) {
    float* d = dst + (j - j0) * g.in;
    for (int64_t t = 0; t < half; t += 16) {  // 16 bytes never straddle a block (blocksize % 32 == 0)
      const __m512 a = _mm512_set1_ps(g.absmax[j * blocks_per_row + t / bytes_per_block]);
      const __m512i v =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.packed + j * half + t)));
      _mm512_storeu_ps(d + t, _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab), a));
      _mm512_storeu_ps(d + half + t, _mm512_mul_ps(_mm512_permutexvar_ps(v, tab), a));
    }
  }
}

}  // namespace gpt2q::cpu::detail
