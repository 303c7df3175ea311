#pragma once
// The arguments of the causal attention kernels, shared by every backend
// (cpu_kernels.h, cuda/cuda_kernels.h) so that ops.cpp fills one struct for
// any device. Pointers are the backend's own memory (host or device).
// Plain data only: CUDA translation units include this too.
#include <cstdint>

#include "core/dtype.h"

namespace gpt2q::backend {

// A [batch, heads, rows, head_dim] view of some buffer: element (b, h, r, d)
// lives at data[b * batch_stride + h * head_stride + r * row_stride + d]
// (strides in elements of the args' dtype; `data` is typed float* for the
// CPU, and a CUDA kernel of a 16-bit dtype reinterprets it).
struct HeadView {
  float* data = nullptr;
  int64_t batch_stride = 0, head_stride = 0, row_stride = 0;
  float* at(int64_t b, int64_t h, int64_t r) const { return data + b * batch_stride + h * head_stride + r * row_stride; }
};

// Causal self-attention of `q_len` new queries against `kv_len` keys, the
// queries being the last q_len positions (query i sits at absolute position
// kv_len - q_len + i and sees keys j <= that position whose key_mask entry is
// non-zero). key_mask is [batch, key_mask_stride] bytes, or null for "all keys
// valid". Scores are scaled by `scale`, softmaxed in fp32 over the visible
// keys (masked keys get exactly zero weight, as HF's finfo.min mask gives),
// then multiply v. A row that sees no key at all (impossible with right
// padding: key 0 is always valid) averages all kv_len values, as HF's eager
// path does when finfo.min is added to every score.
struct AttentionArgs {
  DType dtype = DType::F32;  // of q, k, v and out: F32 (any device), F16 / BF16 (CUDA)
  int64_t batch = 0, n_head = 0, head_dim = 0, q_len = 0, kv_len = 0;
  float scale = 1.0f;
  HeadView q, k, v, out;
  const uint8_t* key_mask = nullptr;
  int64_t key_mask_stride = 0;
};

// Causal self-attention of the training pass over qkv [B, T, 3C] (no
// cache), with dropout on the probabilities (cpu/kernels_backward.h has the
// contract). attn_p = 0 disables dropout; the mask index of probability
// (b, h, i, j), j <= i, is ((b·H + h)·T + i)·T + j.
struct TrainAttentionArgs {
  int64_t batch = 0, seq = 0, n_head = 0, head_dim = 0;
  float scale = 1.0f, attn_p = 0.0f;
  uint64_t dropout_key = 0;
  const uint8_t* key_mask = nullptr;  // [batch, key_mask_stride], null = all keys valid
  int64_t key_mask_stride = 0;
};

}  // namespace gpt2q::backend
