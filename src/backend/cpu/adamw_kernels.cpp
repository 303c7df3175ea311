// backend/cpu/adamw_kernels.h: AdamW over a range of fp32 elements.
#include "backend/cpu/adamw_kernels.h"

#include <immintrin.h>

#include <cmath>
#include <cstddef>

namespace gpt2q::cpu {

namespace {

// Elements [0, n): the decayed weight, both moments and the update in one
// pass. The vector body does the scalar tail's operations in the same order,
// each correctly rounded, so lanes and tail agree with the reference.
void update_range(float* p, const float* g, float* m, float* v, size_t n, const backend::AdamWStep& k) {
  const __m256 keep = _mm256_set1_ps(k.keep), w1 = _mm256_set1_ps(k.w1), b2 = _mm256_set1_ps(k.b2),
               w2 = _mm256_set1_ps(k.w2), neg_step = _mm256_set1_ps(k.neg_step_size),
               bc2_sqrt = _mm256_set1_ps(k.bc2_sqrt), eps = _mm256_set1_ps(k.eps);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 pv = _mm256_loadu_ps(p + i);
    if (k.decay) pv = _mm256_mul_ps(pv, keep);
    const __m256 gv = _mm256_loadu_ps(g + i), m0 = _mm256_loadu_ps(m + i), v0 = _mm256_loadu_ps(v + i);
    const __m256 m1 = _mm256_fmadd_ps(w1, _mm256_sub_ps(gv, m0), m0);
    const __m256 v1 = _mm256_fmadd_ps(_mm256_mul_ps(w2, gv), gv, _mm256_mul_ps(v0, b2));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v1), bc2_sqrt), eps);
    _mm256_storeu_ps(p + i, _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(neg_step, m1), denom)));
    _mm256_storeu_ps(m + i, m1);
    _mm256_storeu_ps(v + i, v1);
  }
  for (; i < n; ++i) {
    const float pd = k.decay ? p[i] * k.keep : p[i];
    const float mi = std::fma(k.w1, g[i] - m[i], m[i]);
    const float vi = std::fma(k.w2 * g[i], g[i], v[i] * k.b2);
    const float denom = std::sqrt(vi) / k.bc2_sqrt + k.eps;
    p[i] = pd + (k.neg_step_size * mi) / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void adamw_update(const backend::AdamWArgs& a) {
  update_range(a.param, a.grad, a.exp_avg, a.exp_avg_sq, static_cast<size_t>(a.n), a.k);
}

namespace reference {

void adamw_update(const backend::AdamWArgs& a) {
  const backend::AdamWStep& k = a.k;
  const size_t n = static_cast<size_t>(a.n);
  float *param = a.param, *exp_avg = a.exp_avg, *exp_avg_sq = a.exp_avg_sq;
  const float* grad = a.grad;
  if (k.decay)
    for (size_t i = 0; i < n; ++i) param[i] *= k.keep;
  for (size_t i = 0; i < n; ++i) {
    const float g = grad[i];
    // torch's lerp for weight < 0.5: start + weight * (end - start), fused.
    const float m = std::fma(k.w1, g - exp_avg[i], exp_avg[i]);
    // torch's addcmul: self + (value * t1) * t2, the last multiply-add fused.
    const float v = std::fma(k.w2 * g, g, exp_avg_sq[i] * k.b2);
    const float denom = std::sqrt(v) / k.bc2_sqrt + k.eps;
    param[i] = param[i] + (k.neg_step_size * m) / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

}  // namespace reference

}  // namespace gpt2q::cpu
