// Row-wise and element-wise CPU kernels: LayerNorm, GELU, softmax, residual
// add, embedding lookup. AVX2 where the work is transcendental (exp), plain
// `omp simd` loops elsewhere.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/formulas.h"
#include "backend/cpu/simd_math.h"

namespace gpt2q::cpu {

void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinStreamed)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const LayerNormStats st = layer_norm_stats(xr, cols, eps);
    const double mean_d = st.mean, rstd = st.rstd;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = static_cast<float>((xr[c] - mean_d) * rstd * w[c] + b[c]);
  }
}

namespace {
// 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/π)·(x + 0.044715·x³).
// The sigmoid form needs one exp and is accurate where 1 + tanh(u) cancels.
inline __m256 gelu_new8(__m256 x) {
  const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f);
  __m256 x2 = _mm256_mul_ps(x, x);
  __m256 inner = _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x2, _mm256_set1_ps(1.0f));
  __m256 t = _mm256_mul_ps(_mm256_mul_ps(k2, x), inner);
  __m256 e = simd::exp8(t);
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
}  // namespace

void gelu_new(float* x, int64_t n) {
  const int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < blocks; ++i) _mm256_storeu_ps(x + 8 * i, gelu_new8(_mm256_loadu_ps(x + 8 * i)));
  if (int64_t tail = n - 8 * blocks; tail > 0) {
    alignas(32) float buf[8] = {};
    std::memcpy(buf, x + 8 * blocks, sizeof(float) * tail);
    _mm256_store_ps(buf, gelu_new8(_mm256_load_ps(buf)));
    std::memcpy(x + 8 * blocks, buf, sizeof(float) * tail);
  }
}

void gelu_erf(float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinStreamed)
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax_row(float* x, int64_t n) {
  const int64_t full = n / 8 * 8;
  const float ninf = -std::numeric_limits<float>::infinity();
  __m256 vmax = _mm256_set1_ps(ninf);
  for (int64_t i = 0; i < full; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float mx = simd::hmax8(vmax);
  for (int64_t i = full; i < n; ++i) mx = std::max(mx, x[i]);

  const __m256 m = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  for (int64_t i = 0; i < full; i += 8) {
    __m256 e = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  if (full < n) {
    alignas(32) float buf[8];
    std::fill(buf, buf + 8, ninf);
    std::memcpy(buf, x + full, sizeof(float) * (n - full));
    __m256 e = simd::exp8(_mm256_sub_ps(_mm256_load_ps(buf), m));
    _mm256_store_ps(buf, e);
    vsum = _mm256_add_ps(vsum, e);  // padding lanes are exp(-inf) = 0
    std::memcpy(x + full, buf, sizeof(float) * (n - full));
  }
  const float inv = 1.0f / simd::hsum8(vsum);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void softmax_rows(float* x, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * cols, cols);
}

void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinStreamed)
  for (int64_t r = 0; r < rows; ++r) {
    const float* te = wte + static_cast<int64_t>(ids[r]) * cols;
    const float* pe = wpe + positions[r] * cols;
    float* o = out + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) o[c] = te[c] + pe[c];
  }
}

}  // namespace gpt2q::cpu
