// AVX-512 (F/BW/VL/VNNI) int8 kernels; built with -mavx512* (see CMakeLists)
// and reached only through the dispatchers in int8_kernels.cpp after a CPU
// check. Plain loops and intrinsics only: no inline library code that could be
// merged with copies compiled for the AVX2 baseline.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsic headers seed results with _mm512_undefined_*()
// (`__Y = __Y`), which -Wmaybe-uninitialized reports at every inlined call
// (GCC bug 105593), and -Wuninitialized where the seed is used directly
// (_mm512_reduce_add_epi32's extracts). The warning is about the header, not
// this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/quant_int8_kernels.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::cpu::detail {
namespace {
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
// Horizontal sums in a fixed order (lane 0 first), through memory.
inline float hsum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += t[i];
  return s;
}
}  // namespace

namespace {

// Register tile for the weight-only kernel: R rows × C channels accumulators,
// each converted weight vector reused R times, each activation load C times.
template <int R, int C>
void weight_tile(const Int8WeightGemm& g, int64_t i0, int64_t j0) {
  const int64_t in = g.in, vec_end = in - in % 16;
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << (in % 16)) - 1u);
  __m512 acc[R][C];
  __m512i zp[C];
  for (int c = 0; c < C; ++c) zp[c] = _mm512_set1_epi32(g.zero_point[j0 + c]);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < vec_end; k += 16) {
    __m512 w[C];
    for (int c = 0; c < C; ++c) {
      const __m128i q8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g.q + (j0 + c) * in + k));
      w[c] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(q8), zp[c]));
    }
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_loadu_ps(g.x + (i0 + r) * in + k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(x, w[c], acc[r][c]);
    }
  }
  if (tail_mask) {
    // Masked-off lanes load x = 0, so (0 - zp)·0 adds nothing.
    __m512 w[C];
    for (int c = 0; c < C; ++c) {
      const __m128i q8 = _mm_maskz_loadu_epi8(tail_mask, g.q + (j0 + c) * in + vec_end);
      w[c] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(q8), zp[c]));
    }
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_maskz_loadu_ps(tail_mask, g.x + (i0 + r) * in + vec_end);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(x, w[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const float v = g.scale[j0 + c] * hsum(acc[r][c]);
      g.y[(i0 + r) * g.out + j0 + c] = g.bias ? v + g.bias[j0 + c] : v;
    }
}

template <int R>
void weight_tile_rows(const Int8WeightGemm& g, int64_t i0, int64_t j0, int64_t nc) {
  switch (nc) {
    case 4: weight_tile<R, 4>(g, i0, j0); break;
    case 3: weight_tile<R, 3>(g, i0, j0); break;
    case 2: weight_tile<R, 2>(g, i0, j0); break;
    default: weight_tile<R, 1>(g, i0, j0); break;
  }
}

}  // namespace

void int8_weight_gemm_avx512(const Int8WeightGemm& g, int64_t j0, int64_t j1) {
  constexpr int64_t kRows = 4, kChannels = 4;
  for (int64_t i0 = 0; i0 < g.rows; i0 += kRows) {
    const int64_t nr = min64(kRows, g.rows - i0);
    for (int64_t j = j0; j < j1; j += kChannels) {
      const int64_t nc = min64(kChannels, j1 - j);
      switch (nr) {
        case 4: weight_tile_rows<4>(g, i0, j, nc); break;
        case 3: weight_tile_rows<3>(g, i0, j, nc); break;
        case 2: weight_tile_rows<2>(g, i0, j, nc); break;
        default: weight_tile_rows<1>(g, i0, j, nc); break;
      }
    }
  }
}

void int8_decode_rows_avx512(const Int8WeightGemm& g, int64_t j0, int64_t j1, float* dst) {
  const int64_t in = g.in, vec_end = in - in % 16;
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << (in % 16)) - 1u);
  for (int64_t j = j0; j < j1; ++j) {
    const int8_t* q = g.q + j * in;
    float* d = dst + (j - j0) * in;
    const __m512i zp = _mm512_set1_epi32(g.zero_point[j]);
    const __m512 s = _mm512_set1_ps(g.scale[j]);
    for (int64_t k = 0; k < vec_end; k += 16) {
      const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k)));
      _mm512_storeu_ps(d + k, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, zp)), s));
    }
    if (tail_mask) {
      const __m512i v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(tail_mask, q + vec_end));
      _mm512_mask_storeu_ps(d + vec_end, tail_mask, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, zp)), s));
    }
  }
}

namespace {

// R activation rows × C weight rows of int32 dot products, 64 bytes per
// vpdpbusd; each weight load serves R rows and each activation load C
// weight rows. Integer sums are exact, so the reduction order is free.
template <int R, int C>
void i32_tile(const uint8_t* a_biased, const Int8Gemm& g, int64_t i0, int64_t j0) {
  const int64_t in = g.in, vec_end = in - in % 64;
  const __mmask64 tail_mask = (in % 64) ? ((1ull << (in % 64)) - 1ull) : 0ull;
  __m512i acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int64_t k = 0; k < vec_end; k += 64) {
    __m512i b[C];
    for (int c = 0; c < C; ++c) b[c] = _mm512_loadu_si512(g.b + (j0 + c) * in + k);
    for (int r = 0; r < R; ++r) {
      const __m512i a = _mm512_loadu_si512(a_biased + (i0 + r) * in + k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], a, b[c]);
    }
  }
  if (tail_mask) {
    // b is zero in masked lanes, so whatever a holds there adds nothing.
    __m512i b[C];
    for (int c = 0; c < C; ++c) b[c] = _mm512_maskz_loadu_epi8(tail_mask, g.b + (j0 + c) * in + vec_end);
    for (int r = 0; r < R; ++r) {
      const __m512i a = _mm512_maskz_loadu_epi8(tail_mask, a_biased + (i0 + r) * in + vec_end);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], a, b[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      g.c[(i0 + r) * g.out + j0 + c] = _mm512_reduce_add_epi32(acc[r][c]) - 128 * g.b_row_sums[j0 + c];
}

template <int R>
void i32_tile_rows(const uint8_t* a_biased, const Int8Gemm& g, int64_t i0, int64_t j0, int64_t nc) {
  switch (nc) {
    case 4: i32_tile<R, 4>(a_biased, g, i0, j0); break;
    case 3: i32_tile<R, 3>(a_biased, g, i0, j0); break;
    case 2: i32_tile<R, 2>(a_biased, g, i0, j0); break;
    default: i32_tile<R, 1>(a_biased, g, i0, j0); break;
  }
}

}  // namespace

void int8_gemm_i32_avx512(const uint8_t* a_biased, const Int8Gemm& g, int64_t j0, int64_t j1) {
  constexpr int64_t kRows = 4, kChannels = 4;
  for (int64_t i0 = 0; i0 < g.rows; i0 += kRows) {
    const int64_t nr = min64(kRows, g.rows - i0);
    for (int64_t j = j0; j < j1; j += kChannels) {
      const int64_t nc = min64(kChannels, j1 - j);
      switch (nr) {
        case 4: i32_tile_rows<4>(a_biased, g, i0, j, nc); break;
        case 3: i32_tile_rows<3>(a_biased, g, i0, j, nc); break;
        case 2: i32_tile_rows<2>(a_biased, g, i0, j, nc); break;
        default: i32_tile_rows<1>(a_biased, g, i0, j, nc); break;
      }
    }
  }
}

}  // namespace gpt2q::cpu::detail
