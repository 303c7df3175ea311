#pragma once
// CUDA kernels on raw row-major fp32 device buffers, with the signatures of
// their CPU twins in backend/cpu/cpu_kernels.h so that ops.cpp dispatches
// both through one template. Every pointer is device memory (cudaMalloc).
//
// Streams: everything runs on the default (legacy) stream, cuBLAS included,
// so kernels run in call order and a copy to the host (cudaMemcpy) waits for
// them. Calls return once the work is queued; a launch error is an Error at
// once, a fault inside a kernel at the next synchronising call.
//
// Precision: GEMMs are cuBLAS fp32 with TF32 off; LayerNorm statistics and
// the softmax / attention sums are accumulated in double; exp, tanh and erf
// are the fp32 CUDA math functions (within 4 ulp). docs/cuda.md has the
// tolerances the tests hold them to.
#include <cstdint>
#include <string>

#include "backend/attention_args.h"

namespace gpt2q::cuda {

// True when a CUDA device can be used; otherwise `why` (if given) says why
// (no driver, no device, ...). Never throws.
bool device_available(std::string* why = nullptr);
// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)" for the current device.
std::string device_description();
// Waits for all queued device work; throws Error on a fault it reports.
void synchronize();

// y[rows, out] = x[rows, in] · w[in, out] + bias[out]  (bias may be null).
void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y);
// c[m, n] = a[m, k] · b[n, k]ᵀ
void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c);

// Per row of x[rows, cols]: (x - mean) / sqrt(var + eps) * w + b, biased
// variance, two-pass statistics in double. y may alias x.
void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, float* y);
// In place, see cpu_kernels.h.
void gelu_new(float* x, int64_t n);
void gelu_erf(float* x, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);
// Softmax over each row of x[rows, cols], in place; -inf entries get 0.
void softmax_rows(float* x, int64_t rows, int64_t cols);
// out[r, :] = wte[ids[r], :] + wpe[positions[r], :]. ids and positions are
// device buffers whose values the caller has checked against the tables.
void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out);

using backend::AttentionArgs;  // backend/attention_args.h, as the CPU kernels
using backend::HeadView;
// Causal attention of q_len queries (the last q_len of kv_len positions)
// with an optional key mask, as cpu::causal_attention; a row that sees no
// key averages all kv_len values.
void causal_attention(const AttentionArgs& args);
// Copies the k and v parts of qkv [batch, seq, 3·n_head·head_dim] into caches
// [batch, n_head, capacity, head_dim] at positions [past, past + seq).
void store_kv(const float* qkv, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim, float* cache_k,
              float* cache_v, int64_t capacity, int64_t past);

}  // namespace gpt2q::cuda
