#pragma once
// The causal self-attention of the training pass on CUDA, the twin of
// cpu::attention_forward_train / attention_backward (backend/attention_args.h
// TrainAttentionArgs; every pointer device memory, the key mask too). fp32
// in, double sums, the probabilities kept [B, H, T, T] for the backward.
// Neither allocates from the driver nor synchronises; the backward takes a
// [B, H, T, T] double scratch from the caching pool.
#include <driver_types.h>

#include "backend/attention_args.h"

namespace gpt2q::cuda {

// probs: the softmax before dropout; dropped: after it (may be null: not
// kept; the backward recomputes the masks); out [B, T, C] = dropped · v.
void attention_forward_train(const backend::TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped,
                             float* out, cudaStream_t stream);
// dqkv [B, T, 3C] (overwritten) from dout [B, T, C] and the forward's probs.
void attention_backward(const backend::TrainAttentionArgs& a, const float* qkv, const float* probs, const float* dout,
                        float* dqkv, cudaStream_t stream);

// The same on the tensor cores (attention_batched.cu): the per-head products
// as batched cuBLASLt GEMMs (exact fp32, or bf16 under
// Fp32Products::bf16), the softmax in fp32. dropped may be null (always when
// attn_p is 0): the forward then drops into a scratch and the backward
// regenerates it from the counters. Scratch from the caching pool: [B, H, T,
// T] floats and 4 (forward) or 7 (backward) · [B, T, C].
void attention_forward_train_batched(const backend::TrainAttentionArgs& a, const float* qkv, float* probs,
                                     float* dropped, float* out, cudaStream_t stream);
void attention_backward_batched(const backend::TrainAttentionArgs& a, const float* qkv, const float* probs,
                                const float* dropped, const float* dout, float* dqkv, cudaStream_t stream);

// The flash-style kernels (attention_flash_train.cu), for bf16 training:
// q, k, v, P, dO and dS are rounded to bf16 as the tensor cores' operands
// (fp32 sums); the forward keeps only lse [B, H, T] (each row's log-sum-exp,
// natural log) and the backward recomputes the probabilities from it, the
// forward's out [B, T, C] and the same dropout counters. Head size 64 only
// (train_attention_flash: the head size is 64 and GPT2Q_TRAIN_ATTENTION does
// not name "batched" or "rows"; read at every call). Scratch from the caching
// pool: bf16 copies of qkv (and dout), D [B, H, T] and an fp32 dQ [B, T, C].
bool train_attention_flash(int64_t head_dim);
void attention_forward_train_flash(const backend::TrainAttentionArgs& a, const float* qkv, float* lse, float* out,
                                   cudaStream_t stream);
void attention_backward_flash(const backend::TrainAttentionArgs& a, const float* qkv, const float* lse,
                              const float* out, const float* dout, float* dqkv, cudaStream_t stream);

// Which of the probabilities' kernels the training attention runs: the batched ones, unless
// GPT2Q_TRAIN_ATTENTION=rows asks for the row kernels above (double sums, the
// reference's arithmetic; read at every call).
bool train_attention_batched();

// Both kernels' limits (batch, heads, sequence): an Error naming the value.
void check_train_attention_dims(const backend::TrainAttentionArgs& a);

}  // namespace gpt2q::cuda
