#pragma once
// CPU kernels of the training pass: the backward of every op of the GPT-2
// forward, dropout, a forward attention that keeps its probabilities, and
// softmax cross entropy. Raw row-major fp32 buffers, like cpu_kernels.h; the
// scalar twins are in reference_backward.h, the Tensor-level entry points in
// ops/ops_backward.h. Gradients of parameters are ACCUMULATED (+=) so that
// several uses (the tied wte) and micro-batches add up.
#include <cstdint>

#include "backend/attention_args.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/splitmix64.h"

namespace gpt2q::cpu {

// --- dropout masks --------------------------------------------------------
// One 64-bit key per (seed, step, micro-batch, site); element i of the site
// is kept iff uniform(key, i) >= p, where uniform takes the top 24 bits of
// splitmix64(key + i) as a multiple of 2^-24 in [0, 1). Kept elements are
// scaled by 1 / (1 - p).
uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t micro, uint64_t site);
inline float dropout_uniform(uint64_t key, uint64_t index) {
  return static_cast<float>(splitmix64(key + index) >> 40) * 0x1p-24f;
}
inline float dropout_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }
// x[i] = keep(i) ? x[i] * scale : 0 for i in [0, n); element i is mask index
// first + i. The same call on a gradient applies the same mask (backward).
void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first = 0);

// c[m, n] = alpha * a[k, m]ᵀ · b[k, n] + beta * c
void sgemm_tn(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc);

// y = x·W + b, W [in, out]:  dx = dy·Wᵀ (overwritten; skipped when null),
// dw += xᵀ·dy, db += Σ_rows dy (skipped when null).
void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db);
// c = a·bᵀ, a [m, k], b [n, k]:  da = dc·b (overwritten; skipped when null), db += dcᵀ·a.
void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc, float* da,
                        float* db);

// LayerNorm as cpu::layer_norm (statistics recomputed from x the same way):
// dx += ∂L/∂x, dw += Σ dy·x̂, db += Σ dy.
void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db);

// dy[i] *= gelu'(x[i]), x the activation's input.
void gelu_new_backward(const float* x, float* dy, int64_t n);
void gelu_erf_backward(const float* x, float* dy, int64_t n);

// dwte[ids[r]] += dout[r]; dwpe[positions[r]] += dout[r].
void embedding_backward(const int32_t* ids, const int64_t* positions, int64_t rows, const float* dout, int64_t cols,
                        float* dwte, float* dwpe);

// Causal self-attention of the training pass over qkv [B, T, 3C] (no cache):
// probs [B, H, T, T] receives the softmax probabilities before dropout (zero
// above the diagonal and at masked keys), dropped [B, H, T, T] (needed only
// when attn_p > 0, else may be null) the probabilities after dropout, and
// out [B, T, C] = dropped·v. The backward reads the mask back from dropped.
// attn_p = 0 disables dropout; the mask index of probability (b, h, i, j),
// j <= i, is ((b·H + h)·T + i)·T + j (above the diagonal nothing is dropped).
using TrainAttentionArgs = backend::TrainAttentionArgs;  // backend/attention_args.h
void attention_forward_train(const TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped,
                             float* out);
// dqkv [B, T, 3C] (overwritten) from dout [B, T, C], with the forward's probs
// and dropped probabilities.
void attention_backward(const TrainAttentionArgs& a, const float* qkv, const float* probs, const float* dropped,
                        const float* dout, float* dqkv);

// Softmax cross entropy per row of logits [rows, cols] against targets
// (-1 = ignored row): row_loss[r] = −log softmax(row)[target] (double; 0 for
// an ignored row); dlogits = grad_scale · (softmax − onehot) for scored rows
// and 0 for ignored ones. dlogits may alias logits.
void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, float grad_scale,
                   float* dlogits, double* row_loss);

}  // namespace gpt2q::cpu
