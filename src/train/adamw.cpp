#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace gpt2q::train {

void adamw_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                  std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay, const AdamWOptions& opts) {
  GPT2Q_CHECK(grad.size() == param.size() && exp_avg.size() == param.size() && exp_avg_sq.size() == param.size(),
              "adamw_update: sizes differ");
  GPT2Q_CHECK(step >= 1, "adamw_update: step {}", step);
  const size_t n = param.size();
  // Python scalars are doubles; torch casts each to the tensor's float32
  // when the op runs, after the double arithmetic shown.
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
  for (size_t i = 0; i < params.size(); ++i) {
    auto& p = params[i];
    GPT2Q_CHECK(p.value.numel() == exp_avg_[i].numel(), "AdamW: {} changed shape", p.name);
    adamw_update(p.value.span<float>(), p.grad.span<const float>(), exp_avg_[i].span<float>(),
                 exp_avg_sq_[i].span<float>(), steps_, lr, p.decay ? opts_.weight_decay : 0.0, opts_);
  }
}

}  // namespace gpt2q::train
