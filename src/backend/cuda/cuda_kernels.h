#pragma once
// CUDA kernels on raw row-major device buffers, the twins of the CPU kernels
// in backend/cpu (same argument structs: attention_args.h, linear_args.h),
// so that ops dispatches both through one template (ops/kernel_sets.h).
// Every pointer is device memory.
//
// Streams: every launcher takes the stream to queue on (llm.c's rule); ops
// passes the calling thread's (core/device_memory.h's cuda_stream()). No
// launcher allocates from the driver, copies to the host or synchronises, so
// a forward can be captured in a CUDA graph. A launch error is an Error at
// once; a fault inside a kernel surfaces at the next synchronising call.
//
// Precision (docs/cuda.md has the tolerances the tests hold them to): fp32
// GEMMs are cuBLASLt with full fp32 sums (never TF32); 16-bit GEMMs sum in
// fp32; LayerNorm statistics, softmax sums and the fp32 attention are
// accumulated in double; exp, tanh and erf are the fp32 CUDA functions.
#include <driver_types.h>

#include <cstdint>
#include <string>

#include "backend/attention_args.h"
#include "backend/linear_args.h"

namespace gpt2q::cuda {

// True when a CUDA device can be used; otherwise `why` (if given) says why
// (no driver, no device, ...). Never throws.
bool device_available(std::string* why = nullptr);
// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)" for the current device.
std::string device_description();
// The current device's name, compute capability ("9.0"), driver and runtime
// versions ("13.0"), multiprocessors and memory, for reports.
struct DeviceInfo {
  std::string name, compute_capability, driver, runtime;
  int multiprocessors = 0;
  size_t memory = 0;
};
DeviceInfo device_info();
// Waits for all queued device work; throws Error on a fault it reports.
void synchronize();

// The linear-layer ops (backend/linear_args.h).
void linear_op(const backend::LinearArgs& a, cudaStream_t stream);
void quant_linear_op(const backend::QuantLinearArgs& a, cudaStream_t stream);
void gather_rows_op(const backend::GatherArgs& a, cudaStream_t stream);

// y[rows, out] = x[rows, in] · w[in, out] + bias[out]  (bias may be null), fp32.
void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y,
            cudaStream_t stream);
// c[m, n] = a[m, k] · b[n, k]ᵀ, fp32.
void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c, cudaStream_t stream);

// Per row of x[rows, cols] (fp32): (x - mean) / sqrt(var + eps) * w + b,
// biased variance, two-pass statistics in double, written as y_dtype (F32,
// F16 or BF16). y may alias x when it is F32.
void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps, void* y,
                DType y_dtype, cudaStream_t stream);
// In place on x of `dtype` (F32, F16 or BF16), see cpu_kernels.h.
void gelu_new(void* x, DType dtype, int64_t n, cudaStream_t stream);
void gelu_erf(void* x, DType dtype, int64_t n, cudaStream_t stream);
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);
// out[i] = in[i] converted (F32, F16, BF16 either way; round to nearest even).
void convert(const void* in, DType in_dtype, void* out, DType out_dtype, int64_t n, cudaStream_t stream);
// Softmax over each row of x[rows, cols], in place; -inf entries get 0.
void softmax_rows(float* x, int64_t rows, int64_t cols, cudaStream_t stream);
// nll[r] = max + log Σ exp(x - max) - x[target[r]] for each row of logits
// [rows, V] (max in fp32, sum in double), as the CPU's reference.
void token_nll(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll, cudaStream_t stream);
// out[r, :] = wte[ids[r], :] + wpe[positions[r], :]. ids and positions are
// device buffers whose values the caller has checked against the tables.
void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out, cudaStream_t stream);

using backend::AttentionArgs;  // backend/attention_args.h, as the CPU kernels
using backend::HeadView;
// Causal attention of q_len queries (the last q_len of kv_len positions)
// with an optional key mask, as cpu::causal_attention; a row that sees no
// key averages all kv_len values. args.dtype F32, F16 or BF16.
void causal_attention(const AttentionArgs& args, cudaStream_t stream);
// Copies the k and v parts of qkv [batch, seq, 3·n_head·head_dim] into caches
// [batch, n_head, capacity, head_dim] at positions [past, past + seq), all of
// `dtype`.
void store_kv(const void* qkv, DType dtype, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim,
              void* cache_k, void* cache_v, int64_t capacity, int64_t past, cudaStream_t stream);

}  // namespace gpt2q::cuda
