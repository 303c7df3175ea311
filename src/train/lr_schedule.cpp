#include "train/lr_schedule.h"

#include <algorithm>

namespace gpt2q::train {

double linear_warmup_multiplier(int64_t step, int64_t warmup_steps, int64_t total_steps) {
  if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  return std::max(0.0, static_cast<double>(total_steps - step) /
                           static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps)));
}

double linear_warmup_lr(double base_lr, int64_t step, int64_t warmup_steps, int64_t total_steps) {
  return base_lr * linear_warmup_multiplier(step, warmup_steps, total_steps);
}

}  // namespace gpt2q::train
