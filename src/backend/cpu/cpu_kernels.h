#pragma once
// Fast CPU kernels on raw row-major fp32 buffers. GEMMs go to OpenBLAS
// (OpenMP build, one thread pool with our loops); our own loops use
// `omp parallel for schedule(static)`, so a result depends only on the
// thread count. Each kernel has a scalar twin in reference_ops.h that the
// tests compare it with; the Tensor-level entry points are in ops/ops.h.
#include <cstdint>
#include <string>

#include "backend/attention_args.h"
#include "core/tensor.h"

namespace gpt2q::cpu {

// "OpenBLAS 0.3.21 ... (core: Zen)": what the GEMMs run on, for reports.
std::string blas_description();

// The OpenBLAS kernel set (an OPENBLAS_CORETYPE value) to use instead of the
// one OpenBLAS chose, or "" to keep it. OpenBLAS picks its kernels by CPU
// model at load; a model newer than the library (Emerald Rapids for
// Debian's 0.3.21) falls back to a generic SSE3 set ("Prescott"): several
// times slower, and its GEMMs split the inner dimension across threads, so
// results would depend on the thread count. Then this names the newest set
// the CPU's features run: Cooperlake (AVX-512 BF16), SkylakeX (AVX-512),
// Haswell (AVX2 + FMA). An OPENBLAS_CORETYPE already set is kept.
std::string blas_coretype_upgrade();
// Switches OpenBLAS to blas_coretype_upgrade()'s kernel set, once, before the
// first product (every GEMM entry point of backend/cpu calls it): it sets
// OPENBLAS_CORETYPE and re-runs OpenBLAS's own kernel selection
// (gotoblas_dynamic_init of a DYNAMIC_ARCH build, found with dlsym; without
// it nothing changes). So the CLI, the tests and any program linking gpt2q
// run the same kernels.
void ensure_blas_kernels();

// Below this many elements a loop runs on one thread: waking the team (and,
// on a busy machine, waiting for every thread of it to be scheduled) costs
// more than the work. Transcendental loops (GELU, softmax, attention) pay
// off sooner than streaming ones (copies, adds, LayerNorm), which a single
// core runs at ~10 GB/s.
inline constexpr int64_t kParallelMinElements = int64_t{1} << 15;
inline constexpr int64_t kParallelMinStreamed = int64_t{1} << 19;

// An uninitialised host tensor (contents undefined) for outputs that an op
// overwrites entirely. Blocks of 1 MiB and more come from a cache that keeps
// released blocks (up to 4 GiB idle) for reuse, so repeated forwards do not
// fault their buffers in again; release_scratch_cache() frees the idle ones.
Tensor scratch_tensor(const Shape& shape, DType dtype);
void release_scratch_cache();
size_t scratch_cache_bytes();  // idle bytes held by the cache

// c[m, n] = alpha * a[m, k] · b[k, n] + beta * c   (row-major, leading dims given)
void sgemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc);
// c[m, n] = alpha * a[m, k] · b[n, k]ᵀ + beta * c
void sgemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc);

// y[rows, out] = x[rows, in] · w[in, out] + bias[out]  (bias may be null).
void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y);

// Per row of x[rows, cols]: (x - mean) / sqrt(var + eps) * w + b, biased
// variance from a two-pass mean / variance. y may alias x.
void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, float* y);

// gelu_new(x) = 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), in place.
void gelu_new(float* x, int64_t n);
// Exact (erf) GELU, for configs with activation_function "gelu".
void gelu_erf(float* x, int64_t n);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

// Softmax over each row of x[rows, cols], in place (fp32, max-subtracted).
// Entries of -inf get weight 0; a row must hold at least one finite value.
void softmax_rows(float* x, int64_t rows, int64_t cols);
void softmax_row(float* x, int64_t n);  // one row, single-threaded

// out[r, :] = wte[ids[r], :] + wpe[positions[r], :]. Ids and positions must
// already be checked against the table sizes.
void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out);

// Causal attention with the arguments of backend/attention_args.h.
using backend::AttentionArgs;
using backend::HeadView;
void causal_attention(const AttentionArgs& args);

// Copies the k and v parts of qkv [batch, seq, 3·n_head·head_dim] into caches
// [batch, n_head, capacity, head_dim] at positions [past, past + seq).
void store_kv(const float* qkv, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim, float* cache_k,
              float* cache_v, int64_t capacity, int64_t past);

}  // namespace gpt2q::cpu
