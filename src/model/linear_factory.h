#pragma once
// Builds the Linear of a block projection from a checkpoint: dense fp32 for a
// float weight (F16 / BF16 converted once), or the packed quantized format
// (src/quant) for a weight a quantized checkpoint stores as U8 / I8, which
// then runs from the packed codes and is never expanded to fp32. A quantized
// checkpoint's unquantized 16-bit projections stay 16-bit in memory
// (transposed to [out, in], converted to fp32 in blocks for each product).
#include <memory>
#include <string>

#include "io/checkpoint.h"
#include "model/linear.h"

namespace gpt2q {

// `module`: "h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc" or
// "h.0.mlp.c_proj" (canonical names; the checkpoint holds MODULE.weight and
// MODULE.bias). Errors name the checkpoint file and the tensor.
std::unique_ptr<Linear> make_linear(const Checkpoint& ck, const std::string& module);

// The Conv1D shape [in, out] of a block projection, from the config.
Shape block_linear_shape(const GPT2Config& config, const std::string& module);

}  // namespace gpt2q
