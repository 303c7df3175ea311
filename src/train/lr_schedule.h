#pragma once
// transformers.get_linear_schedule_with_warmup: the multiplier applied to the
// base learning rate at scheduler step `step` (0-based; optimizer step k uses
// step k-1, as the Trainer calls optimizer.step() before scheduler.step()):
//   step < warmup ? step / max(1, warmup) : max(0, (total - step) / max(1, total - warmup))
// LambdaLR's lr = base_lr * multiplier, in double, as Python computes it.
#include <cstdint>

namespace gpt2q::train {

double linear_warmup_multiplier(int64_t step, int64_t warmup_steps, int64_t total_steps);
double linear_warmup_lr(double base_lr, int64_t step, int64_t warmup_steps, int64_t total_steps);

}  // namespace gpt2q::train
