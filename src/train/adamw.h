#pragma once
// AdamW exactly as torch.optim.AdamW's single-tensor CPU path
// (torch/optim/adam.py `_single_tensor_adam` with decoupled_weight_decay),
// float op for float op, so that our weights equal PyTorch's bit for bit
// (tests/test_train_adamw.cpp against tools/make_adamw_fixtures.py):
//
//   step += 1                                    (a count; torch keeps it as a float tensor, exact)
//   p   = p * f32(1 - lr*wd)                      (only when wd != 0; lr*wd in double)
//   m   = lerp(m, g, f32(1 - beta1))              (torch's vector lerp: fma(w, g - m, m))
//   v   = fma(f32(1 - beta2) * g, g, v * f32(beta2))   (torch's addcmul, fused)
//   bc1 = 1 - beta1^step;  bc2 = 1 - beta2^step   (double; pow as Python's **)
//   denom = sqrt(v) / f32(bc2^0.5) + f32(eps)
//   p   = p + (f32(-lr / bc1) * m) / denom
//
// Weight decay applies only to Parameter::decay parameters (HF Trainer's
// groups: none for biases and LayerNorm weights).
#include <cstdint>
#include <span>
#include <vector>

#include "backend/adamw_args.h"
#include "core/tensor.h"
#include "train/trainable_gpt2.h"

namespace gpt2q::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
};

// The per-step constants of the formula above (backend/adamw_args.h), as
// torch computes them: in double, then rounded to float. The kernels of every
// device (backend/cpu/adamw_kernels.h, ops::adamw_update on CUDA) apply them
// with the same float operations, so they agree bit for bit.
backend::AdamWStep adamw_step_constants(int64_t step, double lr, double weight_decay, const AdamWOptions& opts);

// One AdamW update of one tensor on the CPU; `step` is the new (1-based) step
// count. One pass over the elements, 8 at a time (backend/cpu/adamw_kernels.h),
// on the calling thread; equal to adamw_update_reference bit for bit
// (tests/test_train_adamw.cpp).
void adamw_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                  std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay, const AdamWOptions& opts);
// The scalar reference: the formula above, element by element, weight decay
// as a separate pass first (as torch does).
void adamw_update_reference(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                            std::span<float> exp_avg_sq, int64_t step, double lr, double weight_decay,
                            const AdamWOptions& opts);

class AdamW {
 public:
  // State (exp_avg, exp_avg_sq) zero, shaped like each parameter (host
  // tensors: parameters on the CPU).
  AdamW(const std::vector<Parameter>& params, AdamWOptions opts);
  // State in flat buffers on the model's device, laid out as its parameters
  // (FlatLayout), exp_avg()[i] viewing parameter i's range. step() must then
  // be given model.parameters(). Off the CPU a step is one AdamW launch per
  // weight-decay group over the whole flat range (its gaps are zero and
  // stay zero); on the CPU it is the per-tensor pass below. Either way each
  // element gets the same float operations, so the bits agree.
  AdamW(TrainableGPT2& model, AdamWOptions opts);

  // One step over all parameters with learning rate `lr` (the scheduled one):
  // adamw_update's per-element work over all tensors, cut into chunks that
  // the OpenMP threads share in one parallel region.
  void step(std::vector<Parameter>& params, double lr);

  const AdamWOptions& options() const { return opts_; }
  int64_t steps() const { return steps_; }
  // For checkpoints: the moments, in parameter order.
  std::vector<Tensor>& exp_avg() { return exp_avg_; }
  std::vector<Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  const std::vector<Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  AdamWOptions opts_;
  int64_t steps_ = 0;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  // The flat form (the second constructor): the model's buffers and the
  // moments' own, all laid out by `layout_`.
  Tensor values_, grads_, flat_avg_, flat_avg_sq_;
  FlatLayout layout_;
};

}  // namespace gpt2q::train
