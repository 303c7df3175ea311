#pragma once
// Device-independent ops on Tensors: each checks shapes and dtypes (fp32,
// contiguous, row-major), then dispatches on the tensors' device to a backend
// (src/backend/cpu today; a CUDA backend adds a case in ops.cpp's dispatch).
// Outputs are preallocated by the caller so the model's hot loop allocates
// nothing. Same signatures in ops/reference.h run the scalar reference
// kernels, which tests compare against.
#include <cstdint>

#include "core/tensor.h"

namespace gpt2q::ops {

// A tensor whose contents are undefined, for an op's output that the op
// writes in full (cheaper than Tensor::empty's zero fill for big buffers).
Tensor scratch(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);

// y[..., out] = x[..., in] · w[in, out] + b[out] (b may be undefined).
void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y);
// c[m, n] = a[m, k] · b[n, k]ᵀ  (e.g. logits = h · wteᵀ).
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c);
// LayerNorm over the last dimension (biased variance, fp32). y may be x.
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y);
// In place: gelu_new (tanh approximation, GPT-2's "gelu_new") / exact erf GELU.
void gelu_new(Tensor& x);
void gelu_erf(Tensor& x);
// Softmax over the last dimension, in place.
void softmax_lastdim(Tensor& x);
// x += y (same shape): the residual connection.
void add_inplace(Tensor& x, const Tensor& y);
// out[r] = wte[ids[r]] + wpe[positions[r]]; ids I32 [rows], positions I64
// [rows], out [rows, C]. Ids or positions outside the tables are an Error.
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out);

// Causal self-attention over qkv [B, T, 3C] (c_attn's output: q | k | v, each
// split into n_head heads of C / n_head) -> out [B, T, C]. key_mask: U8
// [B, M], M >= T, 1 where a key may be attended (padding -> 0), or undefined.
// Scores are multiplied by `scale` (HF: 1/sqrt(head_dim), / (layer+1) with
// scale_attn_by_inverse_layer_idx).
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out);
// The same with a KV cache: cache_k / cache_v [B, n_head, capacity, head_dim]
// hold `past` positions; the new keys and values are written at [past,
// past + T) and the T queries attend to all past + T keys. key_mask: U8
// [B, capacity] covering old and new positions, or undefined.
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out);

}  // namespace gpt2q::ops
