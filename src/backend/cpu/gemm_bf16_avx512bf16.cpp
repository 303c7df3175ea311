// vdpbf16ps micro-kernels for gemm_bf16.h; built with -mavx512bf16 (see
// CMakeLists) and only called where the CPU has it.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/gemm_bf16.h"

namespace gpt2q::cpu::detail {

namespace {

// R rows × C panels (16·C outputs) of c: R·C accumulators, C panel loads and
// R broadcasts per pair of k. 6 × 4 uses 29 of the 32 zmm registers.
constexpr int kMaxR = 6, kMaxC = 4;

struct Args {
  const uint16_t* a;
  int64_t kp;
  const uint16_t* b;  // first panel of the group
  int64_t n_valid;    // outputs of the group that exist (<= 16·C)
  const float* col_scale;
  const float* bias;
  float* c;
  int64_t ldc;
};

template <int R, int C>
void micro(const Args& g) {
  const int64_t pairs = g.kp / 2, panel = g.kp * 16;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  const uint16_t* bp = g.b;
  for (int64_t q = 0; q < pairs; ++q, bp += 32) {
    __m512bh bv[C];
    for (int c = 0; c < C; ++c) bv[c] = (__m512bh)_mm512_loadu_si512(bp + c * panel);
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, g.a + r * g.kp + 2 * q, sizeof pair);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], av, bv[c]);
    }
  }
  for (int c = 0; c < C; ++c) {
    const int64_t left = g.n_valid - 16 * c;
    const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512 scale = g.col_scale ? _mm512_maskz_loadu_ps(mask, g.col_scale + 16 * c) : _mm512_set1_ps(1.0f);
    const __m512 bias = g.bias ? _mm512_maskz_loadu_ps(mask, g.bias + 16 * c) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      __m512 v = g.col_scale ? _mm512_mul_ps(acc[r][c], scale) : acc[r][c];
      if (g.bias) v = _mm512_add_ps(v, bias);
      _mm512_mask_storeu_ps(g.c + r * g.ldc + 16 * c, mask, v);
    }
  }
}

using Micro = void (*)(const Args&);

template <int R>
Micro pick_c(int c) {
  switch (c) {
    case 1: return micro<R, 1>;
    case 2: return micro<R, 2>;
    case 3: return micro<R, 3>;
    default: return micro<R, 4>;
  }
}

Micro pick(int r, int c) {
  switch (r) {
    case 1: return pick_c<1>(c);
    case 2: return pick_c<2>(c);
    case 3: return pick_c<3>(c);
    case 4: return pick_c<4>(c);
    case 5: return pick_c<5>(c);
    default: return pick_c<6>(c);
  }
}

// 32 floats of row `src` from column k0 (zero past `k`) as 16 bf16 pairs.
__m512i bf16_pairs(const float* src, int64_t k0, int64_t k) {
  const int64_t left = k - k0;
  if (left >= 32) return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + k0 + 16), _mm512_loadu_ps(src + k0));
  const auto mask = [](int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); };
  const __m512 lo = _mm512_maskz_loadu_ps(mask(left), src + k0);
  const __m512 hi = left > 16 ? _mm512_maskz_loadu_ps(mask(left - 16), src + k0 + 16) : _mm512_setzero_ps();
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// Swaps bit B between row and column index of 16 × 16 32-bit elements: one
// vpermt2d per row. The four bits in turn transpose. Unrolled with constant
// index tables, so the 16 rows stay in registers.
template <int B>
inline void swap_index_bit(__m512i* r) {
  static constexpr std::array<int32_t, 16> lo_idx = [] {
    std::array<int32_t, 16> t{};
    for (int c = 0; c < 16; ++c) t[c] = (c & B) ? 16 + c - B : c;
    return t;
  }();
  static constexpr std::array<int32_t, 16> hi_idx = [] {
    std::array<int32_t, 16> t{};
    for (int c = 0; c < 16; ++c) t[c] = (c & B) ? 16 + c : c + B;
    return t;
  }();
  const __m512i lo = _mm512_loadu_si512(lo_idx.data()), hi = _mm512_loadu_si512(hi_idx.data());
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if (i & B) continue;
    const __m512i a = r[i], c = r[i + B];
    r[i] = _mm512_permutex2var_epi32(a, lo, c);
    r[i + B] = _mm512_permutex2var_epi32(a, hi, c);
  }
}

inline void transpose16(__m512i* r) {
  swap_index_bit<8>(r);
  swap_index_bit<4>(r);
  swap_index_bit<2>(r);
  swap_index_bit<1>(r);
}

}  // namespace

void bf16_pack_rows_avx512bf16(const float* a, int64_t m, int64_t k, uint16_t* dst) {
  const int64_t kp = bf16_padded_k(k);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t k0 = 0; k0 < kp; k0 += 32) {
      const __m512i v = bf16_pairs(a + i * k, k0, k);
      const int64_t n = std::min<int64_t>(32, kp - k0);
      _mm512_mask_storeu_epi16(dst + i * kp + k0, n >= 32 ? __mmask32(~0u) : __mmask32((1u << n) - 1), v);
    }
}

void bf16_pack_panels_avx512bf16(const float* b, int64_t n, int64_t k, uint16_t* dst) {
  const int64_t kp = bf16_padded_k(k), pairs = kp / 2;
  for (int64_t p = 0; p < bf16_panels(n); ++p)
    for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
      __m512i r[16];
      const int64_t rows = std::min<int64_t>(16, n - 16 * p);
      if (rows == 16 && 2 * q0 + 32 <= k) {
        const float* src = b + 16 * p * k + 2 * q0;
#pragma GCC unroll 16
        for (int c = 0; c < 16; ++c)
          r[c] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + c * k + 16), _mm512_loadu_ps(src + c * k));
      } else {
        for (int c = 0; c < 16; ++c)
          r[c] = c < rows ? bf16_pairs(b + (16 * p + c) * k, 2 * q0, k) : _mm512_setzero_si512();
      }
      transpose16(r);
      const int64_t count = std::min<int64_t>(16, pairs - q0);
      for (int t = 0; t < count; ++t) _mm512_storeu_si512(dst + ((p * pairs + q0 + t) * 16) * 2, r[t]);
    }
}

void gemm_bf16_packed_avx512bf16(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t k,
                                 const float* col_scale, const float* bias, float* c, int64_t ldc) {
  const int64_t kp = bf16_padded_k(k), panels = bf16_panels(n);
  // Column groups outside, rows inside: the group's panels (16·C·kp bf16,
  // <= 384 KiB at k = 3072) stay in L2 while every row block passes over them.
  for (int64_t p0 = 0; p0 < panels; p0 += kMaxC) {
    const int C = static_cast<int>(std::min<int64_t>(kMaxC, panels - p0));
    const int64_t j0 = 16 * p0;
    for (int64_t i0 = 0; i0 < m; i0 += kMaxR) {
      const int R = static_cast<int>(std::min<int64_t>(kMaxR, m - i0));
      const Args args{a + i0 * kp,
                      kp,
                      b + p0 * 16 * kp,
                      std::min<int64_t>(n - j0, 16 * C),
                      col_scale ? col_scale + j0 : nullptr,
                      bias ? bias + j0 : nullptr,
                      c + i0 * ldc + j0,
                      ldc};
      pick(R, C)(args);
    }
  }
}

}  // namespace gpt2q::cpu::detail
