#pragma once
// Plain scalar twins of the kernels in cpu_kernels.h: straightforward loops,
// double accumulation, no threads, no SIMD, no BLAS. They exist to check the
// fast kernels (tests/test_ops_*.cpp) and are never on a hot path.
#include <cstdint>

#include "backend/cpu/cpu_kernels.h"

namespace gpt2q::cpu::reference {

// c[m, n] = a[m, k] · b[k, n]  (contiguous)
void matmul_nn(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c);
// c[m, n] = a[m, k] · b[n, k]ᵀ
void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c);
void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y);
void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, float* y);
void gelu_new(float* x, int64_t n);
void gelu_erf(float* x, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);
void softmax_rows(float* x, int64_t rows, int64_t cols);
void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out);
void causal_attention(const AttentionArgs& args);
// nll[r] = max + log Σ exp(x - max) - x[target[r]] over row r of logits
// [rows, V]: the max in fp32, the sum in double.
void token_nll(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll);

}  // namespace gpt2q::cpu::reference
