#pragma once
// Builds the Linear of a block projection from a checkpoint, for a
// placement: the dense Linear for an F32 / F16 / BF16 weight (dense_linear.h:
// on the CPU kept as stored, a view of the mapping), or the packed quantized
// format for a weight a quantized checkpoint stores as U8 / I8 (quant_linear.h),
// which then runs from the packed codes and is never expanded to fp32. A
// quantized checkpoint's layers copy what they keep, so that its mapping is
// released after loading. Biases are held in fp32.
#include <memory>
#include <string>

#include "io/checkpoint.h"
#include "layers/linear.h"

namespace gpt2q {

// `module`: "h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc" or
// "h.0.mlp.c_proj" (canonical names; the checkpoint holds MODULE.weight and
// MODULE.bias). Errors name the checkpoint file and the tensor.
std::unique_ptr<Linear> make_linear(const Checkpoint& ck, const std::string& module, const Placement& placement = {});

// The Conv1D shape [in, out] of a block projection, from the config.
Shape block_linear_shape(const GPT2Config& config, const std::string& module);

}  // namespace gpt2q
