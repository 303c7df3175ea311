#include "train/grad_clip.h"

#include <algorithm>
#include <cmath>

#include "ops/ops_backward.h"

namespace gpt2q::train {

float global_grad_norm(const std::vector<Parameter>& params) {
  double total_sq = 0;
  for (const auto& p : params) {
    double sq = 0;
    for (float g : p.grad.span<const float>()) sq += static_cast<double>(g) * g;
    const double norm = static_cast<float>(std::sqrt(sq));
    total_sq += norm * norm;
  }
  return static_cast<float>(std::sqrt(total_sq));
}

float clip_grad_norm(std::vector<Parameter>& params, double max_norm) {
  const float total = global_grad_norm(params);
  if (max_norm <= 0) return total;
  // Python's `max_norm / tensor` is tensor.reciprocal() * max_norm.
  const float coef = std::min((1.0f / (total + 1e-6f)) * static_cast<float>(max_norm), 1.0f);
  for (auto& p : params)
    for (float& g : p.grad.span<float>()) g *= coef;
  return total;
}

float clip_grad_norm(TrainableGPT2& model, double max_norm) {
  return ops::clip_grad_norm(model.flat_grads(), model.grad_segments(), max_norm).total_norm;
}

}  // namespace gpt2q::train
