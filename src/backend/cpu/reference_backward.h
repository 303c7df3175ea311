#pragma once
// Plain scalar twins of kernels_backward.h: straightforward loops, double
// accumulation, no threads, no SIMD, no BLAS. Tests compare the fast kernels
// with these and these with finite differences.
#include <cstdint>

#include "backend/cpu/kernels_backward.h"

namespace gpt2q::cpu::reference {

void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first = 0);
void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db);
void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc, float* da,
                        float* db);
void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db);
void gelu_new_backward(const float* x, float* dy, int64_t n);
void gelu_erf_backward(const float* x, float* dy, int64_t n);
void embedding_backward(const int32_t* ids, const int64_t* positions, int64_t rows, const float* dout, int64_t cols,
                        float* dwte, float* dwpe);
// The attention reference recomputes the dropout mask from the counters
// (dropped is written by the forward, and ignored by the backward).
void attention_forward_train(const TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped,
                             float* out);
void attention_backward(const TrainAttentionArgs& a, const float* qkv, const float* probs, const float* dropped,
                        const float* dout, float* dqkv);
void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, float grad_scale,
                   float* dlogits, double* row_loss);

}  // namespace gpt2q::cpu::reference
