// Row-wise and element-wise kernels of the training pass: dropout masks,
// LayerNorm / GELU / embedding backward, softmax cross entropy.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

#include "backend/cpu/formulas.h"
#include "backend/cpu/kernels_backward.h"
#include "backend/cpu/simd_math.h"

namespace gpt2q::cpu {

uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t micro, uint64_t site) {
  // Chained so that no two counter tuples share a key by simple arithmetic.
  uint64_t k = splitmix64(seed);
  k = splitmix64(k ^ step);
  k = splitmix64(k ^ micro);
  return splitmix64(k ^ site);
}

namespace {
// Low 64 bits of a·b per 64-bit lane (AVX2 has no 64-bit multiply).
inline __m256i mul64(__m256i a, __m256i b) {
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b),
                                         _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32)));
  return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

// splitmix64(x) >> 40 for 4 lanes: the 24 bits dropout_uniform uses.
inline __m256i mix_top24(__m256i x) {
  x = _mm256_add_epi64(x, _mm256_set1_epi64x(static_cast<long long>(0x9E3779B97F4A7C15ull)));
  x = mul64(_mm256_xor_si256(x, _mm256_srli_epi64(x, 30)), _mm256_set1_epi64x(static_cast<long long>(0xBF58476D1CE4E5B9ull)));
  x = mul64(_mm256_xor_si256(x, _mm256_srli_epi64(x, 27)), _mm256_set1_epi64x(static_cast<long long>(0x94D049BB133111EBull)));
  return _mm256_srli_epi64(_mm256_xor_si256(x, _mm256_srli_epi64(x, 31)), 40);
}

// Elements [begin, end) of dropout(), 8 at a time: kept iff the 24-bit draw
// u satisfies u · 2^-24 >= p, i.e. u >= ceil(p · 2^24) (exact: both sides
// are multiples of 2^-24 or exact products).
void dropout_range(float* x, int64_t begin, int64_t end, float p, float scale, uint64_t key, uint64_t first) {
  const int32_t threshold = static_cast<int32_t>(std::ceil(static_cast<double>(p) * 0x1p24));
  const __m256i thr_minus_1 = _mm256_set1_epi32(threshold - 1);
  const __m256i pack = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256 vscale = _mm256_set1_ps(scale);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const uint64_t c = key + first + static_cast<uint64_t>(i);
    const __m256i lo = mix_top24(_mm256_setr_epi64x(static_cast<long long>(c), static_cast<long long>(c + 1),
                                                    static_cast<long long>(c + 2), static_cast<long long>(c + 3)));
    const __m256i hi = mix_top24(_mm256_setr_epi64x(static_cast<long long>(c + 4), static_cast<long long>(c + 5),
                                                    static_cast<long long>(c + 6), static_cast<long long>(c + 7)));
    // 8 draws as 32-bit lanes, in element order.
    const __m256i u = _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(lo, pack),
                                                _mm256_permutevar8x32_epi32(hi, pack), 0x20);
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(u, thr_minus_1));
    _mm256_storeu_ps(x + i, _mm256_and_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vscale), keep));
  }
  for (; i < end; ++i) x[i] = dropout_uniform(key, first + static_cast<uint64_t>(i)) >= p ? x[i] * scale : 0.0f;
}
}  // namespace

void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first) {
  if (p <= 0.0f) return;
  const float scale = dropout_scale(p);
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t ch = 0; ch < chunks; ++ch)
    dropout_range(x, ch * kChunk, std::min(n, (ch + 1) * kChunk), p, scale, key, first);
}

void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db) {
  const bool parallel = rows * cols >= kParallelMinStreamed;
  const int threads = parallel ? omp_get_max_threads() : 1;
  // Per-thread partial sums of dw / db, added in thread order afterwards:
  // the result depends on the thread count only, never on timing.
  std::vector<double> partial(static_cast<size_t>(threads) * 2 * cols, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    double* pdw = partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * cols;
    double* pdb = pdw + cols;
    std::vector<float> xhat(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * cols;
      const float* g = dy + r * cols;
      const LayerNormStats st = layer_norm_stats(xr, cols, eps);  // exactly as cpu::layer_norm
      const double mean = st.mean, rstd = st.rstd;
      double sum_g = 0.0, sum_gx = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        xhat[c] = static_cast<float>((xr[c] - mean) * rstd);
        const double gw = static_cast<double>(g[c]) * w[c];
        sum_g += gw;
        sum_gx += gw * xhat[c];
        pdw[c] += static_cast<double>(g[c]) * xhat[c];
        pdb[c] += g[c];
      }
      const double mg = sum_g / static_cast<double>(cols), mgx = sum_gx / static_cast<double>(cols);
      float* dxr = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c)
        dxr[c] += static_cast<float>(rstd * (static_cast<double>(g[c]) * w[c] - mg - xhat[c] * mgx));
    }
  }
  for (int t = 0; t < threads; ++t) {
    const double* pdw = partial.data() + static_cast<size_t>(t) * 2 * cols;
    for (int64_t c = 0; c < cols; ++c) {
      dw[c] += static_cast<float>(pdw[c]);
      db[c] += static_cast<float>(pdw[cols + c]);
    }
  }
}

namespace {
// gelu_new(x) = x·s, s = sigmoid(2u), u = k·(x + 0.044715·x³), so
// gelu_new'(x) = s + x·s·(1 − s)·2·k·(1 + 3·0.044715·x²). The sigmoid form
// has no overflow: exp(−2u) = inf gives s = 0 and a finite product.
inline __m256 gelu_new_grad8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 k2 = _mm256_set1_ps(2.0f * 0.7978845608028654f);
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 u2 = _mm256_mul_ps(_mm256_mul_ps(k2, x), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x2, one));
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, simd::exp8(_mm256_sub_ps(_mm256_setzero_ps(), u2))));
  const __m256 du2 = _mm256_mul_ps(k2, _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), x2, one));
  const __m256 ss = _mm256_mul_ps(s, _mm256_sub_ps(one, s));
  return _mm256_fmadd_ps(_mm256_mul_ps(x, ss), du2, s);
}
}  // namespace

void gelu_new_backward(const float* x, float* dy, int64_t n) {
  const int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < blocks; ++i)
    _mm256_storeu_ps(dy + 8 * i, _mm256_mul_ps(_mm256_loadu_ps(dy + 8 * i), gelu_new_grad8(_mm256_loadu_ps(x + 8 * i))));
  if (int64_t tail = n - 8 * blocks; tail > 0) {
    alignas(32) float xb[8] = {}, gb[8] = {};
    std::memcpy(xb, x + 8 * blocks, sizeof(float) * tail);
    std::memcpy(gb, dy + 8 * blocks, sizeof(float) * tail);
    _mm256_store_ps(gb, _mm256_mul_ps(_mm256_load_ps(gb), gelu_new_grad8(_mm256_load_ps(xb))));
    std::memcpy(dy + 8 * blocks, gb, sizeof(float) * tail);
  }
}

void gelu_erf_backward(const float* x, float* dy, int64_t n) {
  // gelu'(x) = Φ(x) + x·φ(x)
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
    const float pdf = 0.3989422804014327f * std::exp(-0.5f * v * v);
    dy[i] *= cdf + v * pdf;
  }
}

void embedding_backward(const int32_t* ids, const int64_t* positions, int64_t rows, const float* dout, int64_t cols,
                        float* dwte, float* dwpe) {
  // Rows may repeat an id: each thread owns a block of columns and adds the
  // rows in order, so there are no races and the sums are reproducible.
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinStreamed)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(cols, c0 + kBlock);
    for (int64_t r = 0; r < rows; ++r) {
      const float* g = dout + r * cols;
      float* te = dwte + static_cast<int64_t>(ids[r]) * cols;
      float* pe = dwpe + positions[r] * cols;
      for (int64_t c = c0; c < c1; ++c) {
        te[c] += g[c];
        pe[c] += g[c];
      }
    }
  }
}

namespace {
// e[i] = exp(x[i] − m) (e may alias x); returns Σ e.
float exp_shifted(const float* x, float m, float* e, int64_t n) {
  const int64_t full = n / 8 * 8;
  const __m256 vm = _mm256_set1_ps(m);
  __m256 vsum = _mm256_setzero_ps();
  for (int64_t i = 0; i < full; i += 8) {
    __m256 v = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(e + i, v);
    vsum = _mm256_add_ps(vsum, v);
  }
  float sum = simd::hsum8(vsum);
  for (int64_t i = full; i < n; ++i) {
    e[i] = std::exp(x[i] - m);
    sum += e[i];
  }
  return sum;
}
}  // namespace

void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, float grad_scale,
                   float* dlogits, double* row_loss) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * cols;
    float* d = dlogits + r * cols;
    const int32_t t = targets[r];
    if (t < 0) {
      std::fill(d, d + cols, 0.0f);
      row_loss[r] = 0.0;
      continue;
    }
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, x[c]);
    const float xt = x[t];
    const float sum = exp_shifted(x, m, d, cols);
    row_loss[r] = std::log(static_cast<double>(sum)) + m - xt;
    const float k = grad_scale / sum;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] *= k;
    d[t] -= grad_scale;
  }
}

}  // namespace gpt2q::cpu
