#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/error.h"

namespace gpt2q {

int32_t argmax_first(const float* values, int64_t n) {
  GPT2Q_CHECK(n > 0, "argmax of nothing");
  int64_t best = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(values[i])) return static_cast<int32_t>(i);
    if (values[i] > values[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

int32_t TokenSampler::sample(const float* logits, int64_t n, float temperature, int64_t top_k) {
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    fail("temperature must be a positive number, got {}", temperature);
  if (top_k < 0) fail("top-k must be >= 0, got {}", top_k);
  GPT2Q_CHECK(n > 0, "sampling from an empty vocabulary");
  scaled_.resize(n);
  for (int64_t i = 0; i < n; ++i) scaled_[i] = logits[i] / temperature;

  float threshold = -INFINITY;
  if (top_k > 0 && top_k < n) {
    sorted_ = scaled_;
    std::nth_element(sorted_.begin(), sorted_.begin() + (top_k - 1), sorted_.end(), std::greater<float>());
    threshold = sorted_[top_k - 1];
  }
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    if (scaled_[i] >= threshold) mx = std::max(mx, scaled_[i]);
  if (!std::isfinite(mx)) fail("cannot sample: the logits are not finite");

  weights_.assign(n, 0.0);
  double total = 0.0;
  int64_t last_kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (scaled_[i] >= threshold) {
      weights_[i] = std::exp(static_cast<double>(scaled_[i]) - static_cast<double>(mx));
      total += weights_[i];
      last_kept = i;
    }
  }
  const double u = static_cast<double>(rng_() >> 11) * 0x1p-53;
  const double target = u * total;
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    acc += weights_[i];
    if (weights_[i] > 0.0 && acc > target) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last_kept);  // only reachable through rounding at the very top
}

}  // namespace gpt2q
