#include "train/adamw.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace gpt2q::train {

namespace {

// Python scalars are doubles; torch casts each to the tensor's float32 when
// the op runs, after the double arithmetic shown.
struct StepConstants {
  bool decay = false;
  float keep = 1, w1 = 0, b2 = 0, w2 = 0, neg_step_size = 0, bc2_sqrt = 1, eps = 0;
};

StepConstants step_constants(int64_t step, double lr, double weight_decay, const AdamWOptions& opts) {
  StepConstants k;
  k.decay = weight_decay != 0;
  k.keep = static_cast<float>(1.0 - lr * weight_decay);
  k.w1 = static_cast<float>(1.0 - opts.beta1);
  k.b2 = static_cast<float>(opts.beta2);
  k.w2 = static_cast<float>(1.0 - opts.beta2);
  const double s = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(opts.beta1, s);
  const double bias_correction2 = 1.0 - std::pow(opts.beta2, s);
  k.neg_step_size = static_cast<float>(-(lr / bias_correction1));
  k.bc2_sqrt = static_cast<float>(std::pow(bias_correction2, 0.5));
  k.eps = static_cast<float>(opts.eps);
  return k;
}

void check_sizes(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                 std::span<float> exp_avg_sq, int64_t step) {
  GPT2Q_CHECK(grad.size() == param.size() && exp_avg.size() == param.size() && exp_avg_sq.size() == param.size(),
              "adamw_update: sizes differ");
  GPT2Q_CHECK(step >= 1, "adamw_update: step {}", step);
}

// Elements [0, n): the decayed weight, both moments and the update in one
// pass. The vector body does the scalar tail's operations in the same order,
// each correctly rounded, so lanes and tail agree with the reference.
void update_range(float* p, const float* g, float* m, float* v, size_t n, const StepConstants& k) {
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

void adamw_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                  std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay, const AdamWOptions& opts) {
  check_sizes(param, grad, exp_avg, exp_avg_sq, step);
  update_range(param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data(), param.size(),
               step_constants(step, lr, weight_decay, opts));
}

void adamw_update_reference(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                            std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay,
                            const AdamWOptions& opts) {
  check_sizes(param, grad, exp_avg, exp_avg_sq, step);
  const size_t n = param.size();
  if (weight_decay != 0) {
    const float keep = static_cast<float>(1.0 - lr * weight_decay);
    for (size_t i = 0; i < n; ++i) param[i] *= keep;
  }
  const float w1 = static_cast<float>(1.0 - opts.beta1);
  const float b2 = static_cast<float>(opts.beta2);
  const float w2 = static_cast<float>(1.0 - opts.beta2);
  const double s = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(opts.beta1, s);
  const double bias_correction2 = 1.0 - std::pow(opts.beta2, s);
  const float neg_step_size = static_cast<float>(-(lr / bias_correction1));
  const float bc2_sqrt = static_cast<float>(std::pow(bias_correction2, 0.5));
  const float eps = static_cast<float>(opts.eps);
  for (size_t i = 0; i < n; ++i) {
    const float g = grad[i];
    // torch's lerp for weight < 0.5: start + weight * (end - start), fused.
    const float m = std::fma(w1, g - exp_avg[i], exp_avg[i]);
    // torch's addcmul: self + (value * t1) * t2, the last multiply-add fused.
    const float v = std::fma(w2 * g, g, exp_avg_sq[i] * b2);
    const float denom = std::sqrt(v) / bc2_sqrt + eps;
    param[i] = param[i] + (neg_step_size * m) / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

AdamW::AdamW(const std::vector<Parameter>& params, AdamWOptions opts) : opts_(opts) {
  exp_avg_.reserve(params.size());
  exp_avg_sq_.reserve(params.size());
  for (const auto& p : params) {
    exp_avg_.push_back(Tensor::empty(p.value.shape(), DType::F32));
    exp_avg_sq_.push_back(Tensor::empty(p.value.shape(), DType::F32));
  }
}

void AdamW::step(std::vector<Parameter>& params, double lr) {
  GPT2Q_CHECK(params.size() == exp_avg_.size(), "AdamW: {} parameters, state for {}", params.size(), exp_avg_.size());
  ++steps_;
  // The tensors are separate buffers: cut each into chunks of kChunk
  // elements (a multiple of 8, so only a tensor's last chunk has a scalar
  // tail) and let the threads share the list. Static scheduling gives each
  // thread a contiguous run of chunks, i.e. mostly contiguous memory; the
  // work per element is the same everywhere.
  constexpr size_t kChunk = size_t{1} << 15;
  struct Chunk {
    float *p, *m, *v;
    const float* g;
    size_t n;
    const StepConstants* k;
  };
  const StepConstants with_decay = step_constants(steps_, lr, opts_.weight_decay, opts_),
                      without_decay = step_constants(steps_, lr, 0.0, opts_);
  std::vector<Chunk> chunks;
  size_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    auto& p = params[i];
    GPT2Q_CHECK(p.value.numel() == exp_avg_[i].numel(), "AdamW: {} changed shape", p.name);
    const auto pv = p.value.span<float>();
    const auto gv = p.grad.span<const float>();
    const auto mv = exp_avg_[i].span<float>(), vv = exp_avg_sq_[i].span<float>();
    check_sizes(pv, gv, mv, vv, steps_);
    const StepConstants* k = p.decay && opts_.weight_decay != 0 ? &with_decay : &without_decay;
    for (size_t at = 0; at < pv.size(); at += kChunk)
      chunks.push_back({pv.data() + at, mv.data() + at, vv.data() + at, gv.data() + at,
                        std::min(kChunk, pv.size() - at), k});
    total += pv.size();
  }
  // Below a few chunks, waking the threads costs more than it saves.
  const int64_t count = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static) if (total >= 4 * kChunk)
  for (int64_t c = 0; c < count; ++c) {
    const Chunk& ch = chunks[static_cast<size_t>(c)];
    update_range(ch.p, ch.g, ch.m, ch.v, ch.n, *ch.k);
  }
}

}  // namespace gpt2q::train
