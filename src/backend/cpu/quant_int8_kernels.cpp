#include "backend/cpu/quant_int8_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
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

constexpr int64_t kChannelsPerTask = 32;  // output channels one OpenMP task handles
constexpr int64_t kRowTile = 4;           // activation rows sharing one pass over a weight row

// Runs kernel(j0, j1) over [0, out) in chunks, threaded when the work is big
// enough to pay for waking the pool.
template <typename Kernel>
void for_channel_chunks(int64_t out, int64_t work, Kernel kernel) {
  const int64_t chunks = (out + kChannelsPerTask - 1) / kChannelsPerTask;
#pragma omp parallel for schedule(static) if (work > (1 << 18))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t j0 = c * kChannelsPerTask;
    kernel(j0, std::min(out, j0 + kChannelsPerTask));
  }
}

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

void weight_gemm_scalar(const Int8WeightGemm& g, int64_t j0, int64_t j1) {
  for (int64_t i = 0; i < g.rows; ++i) {
    const float* x = g.x + i * g.in;
    for (int64_t j = j0; j < j1; ++j) {
      const int8_t* q = g.q + j * g.in;
      float acc = 0.0f;
      for (int64_t k = 0; k < g.in; ++k) acc += x[k] * static_cast<float>(q[k] - g.zero_point[j]);
      float v = g.scale[j] * acc;
      g.y[i * g.out + j] = g.bias ? v + g.bias[j] : v;
    }
  }
}

void weight_gemm_avx2(const Int8WeightGemm& g, int64_t j0, int64_t j1) {
  const int64_t in = g.in, vec_end = in - in % 8;
  for (int64_t i0 = 0; i0 < g.rows; i0 += kRowTile) {
    const int64_t nr = std::min(kRowTile, g.rows - i0);
    for (int64_t j = j0; j < j1; ++j) {
      const int8_t* q = g.q + j * in;
      const int32_t zp = g.zero_point[j];
      const __m256i zpv = _mm256_set1_epi32(zp);
      __m256 acc[kRowTile] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int64_t k = 0; k < vec_end; k += 8) {
        __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k));
        __m256 w = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(q8), zpv));
        for (int64_t r = 0; r < nr; ++r)
          acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(g.x + (i0 + r) * in + k), w, acc[r]);
      }
      for (int64_t r = 0; r < nr; ++r) {
        const float* x = g.x + (i0 + r) * in;
        float tail = 0.0f;
        for (int64_t k = vec_end; k < in; ++k) tail += x[k] * static_cast<float>(q[k] - zp);
        float v = g.scale[j] * (hsum(acc[r]) + tail);
        g.y[(i0 + r) * g.out + j] = g.bias ? v + g.bias[j] : v;
      }
    }
  }
}

void gemm_i32_scalar(const Int8Gemm& g, int64_t j0, int64_t j1) {
  for (int64_t i = 0; i < g.rows; ++i) {
    const int8_t* a = g.a + i * g.in;
    for (int64_t j = j0; j < j1; ++j) {
      const int8_t* b = g.b + j * g.in;
      int32_t acc = 0;
      for (int64_t k = 0; k < g.in; ++k) acc += static_cast<int32_t>(a[k]) * static_cast<int32_t>(b[k]);
      g.c[i * g.out + j] = acc;
    }
  }
}

void gemm_i32_avx2(const Int8Gemm& g, int64_t j0, int64_t j1) {
  const int64_t in = g.in, vec_end = in - in % 16;
  for (int64_t i0 = 0; i0 < g.rows; i0 += kRowTile) {
    const int64_t nr = std::min(kRowTile, g.rows - i0);
    for (int64_t j = j0; j < j1; ++j) {
      const int8_t* b = g.b + j * in;
      __m256i acc[kRowTile] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                               _mm256_setzero_si256()};
      for (int64_t k = 0; k < vec_end; k += 16) {
        // Sign-extend to int16 and use madd (pairs summed into int32): exact.
        // maddubs would need unsigned a and saturates its int16 pair sums.
        __m256i bw = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + k)));
        for (int64_t r = 0; r < nr; ++r) {
          __m256i aw = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.a + (i0 + r) * in + k)));
          acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(aw, bw));
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        const int8_t* a = g.a + (i0 + r) * in;
        int32_t s = hsum(acc[r]);
        for (int64_t k = vec_end; k < in; ++k) s += static_cast<int32_t>(a[k]) * static_cast<int32_t>(b[k]);
        g.c[(i0 + r) * g.out + j] = s;
      }
    }
  }
}

void decode_rows_scalar(const Int8WeightGemm& g, int64_t j0, int64_t j1, float* dst) {
  for (int64_t j = j0; j < j1; ++j) {
    const int8_t* q = g.q + j * g.in;
    float* d = dst + (j - j0) * g.in;
    for (int64_t k = 0; k < g.in; ++k) d[k] = static_cast<float>(q[k] - g.zero_point[j]) * g.scale[j];
  }
}

void decode_rows_avx2(const Int8WeightGemm& g, int64_t j0, int64_t j1, float* dst) {
  const int64_t in = g.in, vec_end = in - in % 8;
  for (int64_t j = j0; j < j1; ++j) {
    const int8_t* q = g.q + j * in;
    float* d = dst + (j - j0) * in;
    const __m256i zp = _mm256_set1_epi32(g.zero_point[j]);
    const __m256 s = _mm256_set1_ps(g.scale[j]);
    for (int64_t k = 0; k < vec_end; k += 8) {
      const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k)));
      _mm256_storeu_ps(d + k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, zp)), s));
    }
    for (int64_t k = vec_end; k < in; ++k) d[k] = static_cast<float>(q[k] - g.zero_point[j]) * g.scale[j];
  }
}

}  // namespace

void int8_decode_rows(const Int8WeightGemm& g, int64_t j0, int64_t j1, float* dst, Isa isa) {
  require_isa(isa);
  switch (isa) {
    case Isa::scalar: decode_rows_scalar(g, j0, j1, dst); break;
    case Isa::avx2: decode_rows_avx2(g, j0, j1, dst); break;
    case Isa::avx512: detail::int8_decode_rows_avx512(g, j0, j1, dst); break;
  }
}

void int8_weight_gemm(const Int8WeightGemm& g, Isa isa) {
  require_isa(isa);
  const int64_t work = g.rows * g.out * g.in;
  for_channel_chunks(g.out, work, [&](int64_t j0, int64_t j1) {
    switch (isa) {
      case Isa::scalar: weight_gemm_scalar(g, j0, j1); break;
      case Isa::avx2: weight_gemm_avx2(g, j0, j1); break;
      case Isa::avx512: detail::int8_weight_gemm_avx512(g, j0, j1); break;
    }
  });
}

void int8_gemm_i32(const Int8Gemm& g, Isa isa) {
  require_isa(isa);
  Tensor a_biased_buf;
  const uint8_t* a_biased = nullptr;
  if (isa == Isa::avx512) {
    // vpdpbusd multiplies unsigned by signed bytes: feed a + 128 (a ^ 0x80).
    // A scratch buffer: at 4096 rows this is megabytes per call.
    const int64_t n = g.rows * g.in;
    a_biased_buf = scratch_tensor({n}, DType::U8);
    uint8_t* dst = a_biased_buf.data<uint8_t>();
#pragma omp parallel for schedule(static) if (n >= (1 << 20))
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(g.a[i]) ^ 0x80u;
    a_biased = dst;
  }
  const int64_t work = g.rows * g.out * g.in;
  for_channel_chunks(g.out, work, [&](int64_t j0, int64_t j1) {
    switch (isa) {
      case Isa::scalar: gemm_i32_scalar(g, j0, j1); break;
      case Isa::avx2: gemm_i32_avx2(g, j0, j1); break;
      case Isa::avx512: detail::int8_gemm_i32_avx512(a_biased, g, j0, j1); break;
    }
  });
}

}  // namespace gpt2q::cpu
