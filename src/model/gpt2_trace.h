#pragma once
// What GPT2Model's forward keeps when a backward pass follows (training,
// train/train_pass.cpp): the one forward of inference, with HF's dropout at
// its sites and every activation the backward reads. GPT2Model::forward_traced
// fills it; the training pass reads it and never runs a forward of its own.
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/ops_backward.h"

namespace gpt2q {

// Dropout sites: 0 after the embedding; per layer l, 1 + 3l on the attention
// probabilities, 2 + 3l after attn.c_proj, 3 + 3l after mlp.c_proj. A mask
// is ops::dropout_key(seed, step, micro, site) (ops_backward.h), so the
// backward re-derives each one from these counters.
constexpr uint64_t dropout_site_embd() { return 0; }
constexpr uint64_t dropout_site_attn(int64_t l) { return 1 + 3 * static_cast<uint64_t>(l); }
constexpr uint64_t dropout_site_attn_resid(int64_t l) { return 2 + 3 * static_cast<uint64_t>(l); }
constexpr uint64_t dropout_site_mlp_resid(int64_t l) { return 3 + 3 * static_cast<uint64_t>(l); }

// HF's train-mode dropout of one forward: the probabilities (0 = off) and
// the counters of its masks.
struct TraceDropout {
  float p_embd = 0, p_attn = 0, p_resid = 0;
  uint64_t seed = 0, step = 0, micro = 0;
  uint64_t key(uint64_t site) const { return ops::dropout_key(seed, step, micro, site); }
};

// One block's kept activations, rows = batch · seq:
//   x_in [rows, C]: the block's input (residual stream), ln1 = ln_1(x_in),
//   qkv [rows, 3C], probs [B, H, T, T] (before dropout), dropped (after it;
//   undefined without attention dropout, and off the CPU: the backward
//   regenerates it from the counters), attn [rows, C] (the heads merged),
//   x_mid = x_in + dropout(c_proj(attn)), ln2 = ln_2(x_mid),
//   fc_pre = c_fc(ln2) (before the activation).
struct LayerTrace {
  Tensor x_in, ln1, qkv, probs, dropped, attn, x_mid, ln2, fc_pre;
};

struct ForwardTrace {
  TraceDropout dropout;
  int64_t B = 0, T = 0, rows = 0;
  Tensor ids, positions;  // host I32 / I64 [rows] (the embedding backward reads them there)
  Tensor key_mask;        // U8 [B, T] on the model's device; undefined when no row is padded
  std::vector<LayerTrace> layers;
  Tensor x_final;  // the residual stream before ln_f [B, T, C]
  Tensor h;        // after ln_f [B, T, C]
};

}  // namespace gpt2q
