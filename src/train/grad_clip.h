#pragma once
// Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ (norm 2):
//   norm_i = ||g_i||_2 per tensor, total = ||(norm_1, ..., norm_n)||_2,
//   coef = min(1, (1 / (total + 1e-6)) * max_norm), every g_i *= coef.
// torch does this in float32 with its own reduction order; we accumulate the
// squares in double and round each norm to float, which agrees with torch to
// about one float ulp (tests/test_train_adamw.cpp). As torch, the multiply
// happens even when coef is 1 (a no-op).
#include <vector>

#include "train/trainable_gpt2.h"

namespace gpt2q::train {

// The total norm of all gradients (float32 value, as torch returns it).
float global_grad_norm(const std::vector<Parameter>& params);
// Clips in place; returns the total norm before clipping. max_norm <= 0: no
// clipping (the norm is still returned, for the log). Tensor by tensor on
// the host: the scalar reference of the flat form below.
float clip_grad_norm(std::vector<Parameter>& params, double max_norm);
// The same over the model's flat gradient buffer, on its device
// (ops::clip_grad_norm): on the CPU bit for bit the tensor-by-tensor result.
float clip_grad_norm(TrainableGPT2& model, double max_norm);

}  // namespace gpt2q::train
