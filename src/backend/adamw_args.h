#pragma once
// One AdamW update of a range of fp32 elements, as plain data shared by the
// CPU and CUDA kernels (train/adamw.h gives the formula: torch.optim.AdamW's
// single-tensor path, float op for float op). The constants are computed
// once per step on the host (in double, rounded to float as torch does), so
// every device applies the same float operations to each element and gets
// the same bits.
#include <cstdint>

namespace gpt2q::backend {

struct AdamWStep {
  bool decay = false;  // p *= keep first (weight decay != 0 for this parameter)
  float keep = 1, w1 = 0, b2 = 0, w2 = 0, neg_step_size = 0, bc2_sqrt = 1, eps = 0;
};

struct AdamWArgs {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  int64_t n = 0;
  AdamWStep k;
};

}  // namespace gpt2q::backend
