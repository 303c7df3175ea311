#pragma once
// The kernel sets the ops dispatch to (internal to the ops layer): for each
// device a struct of static kernels with the same member names, so that one
// generic op body (ops.cpp, linear_ops.cpp) serves every device and the
// argument checks are written once; and the kernel families (fast,
// reference) that name a set per device (void: none).
#include <utility>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/half_gemm.h"
#include "backend/cpu/linear_ops.h"
#include "backend/cpu/reference_ops.h"
#include "core/device_memory.h"
#include "ops/op_checks.h"

#ifdef GPT2Q_CUDA
#include "backend/cuda/cuda_kernels.h"
#endif

namespace gpt2q::ops::detail {

// The CPU computes with F32 activations; a set's 16-bit entry points say so.
inline void require_f32_on_cpu(const char* op, DType dtype) {
  if (dtype != DType::F32) fail("{}: the CPU computes in F32, got {}", op, dtype_name(dtype));
}

template <bool kReference>
struct CpuSet {
  static void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps,
                         void* y, DType y_dtype) {
    require_f32_on_cpu("layer_norm", y_dtype);
    if constexpr (kReference) cpu::reference::layer_norm(x, rows, cols, w, b, eps, static_cast<float*>(y));
    else cpu::layer_norm(x, rows, cols, w, b, eps, static_cast<float*>(y));
  }
  static void gelu_new(void* x, DType dtype, int64_t n) {
    require_f32_on_cpu("gelu_new", dtype);
    if constexpr (kReference) cpu::reference::gelu_new(static_cast<float*>(x), n);
    else cpu::gelu_new(static_cast<float*>(x), n);
  }
  static void gelu_erf(void* x, DType dtype, int64_t n) {
    require_f32_on_cpu("gelu", dtype);
    if constexpr (kReference) cpu::reference::gelu_erf(static_cast<float*>(x), n);
    else cpu::gelu_erf(static_cast<float*>(x), n);
  }
  static void softmax_rows(float* x, int64_t rows, int64_t cols) {
    if constexpr (kReference) cpu::reference::softmax_rows(x, rows, cols);
    else cpu::softmax_rows(x, rows, cols);
  }
  static void cast(const void* x, DType x_dtype, void* y, DType y_dtype, int64_t n) {
    cpu::convert_dtype(x, x_dtype, y, y_dtype, n);  // exact conversions: one version
  }
  // The scalar loop serves both families (the loss is summed in double).
  static void token_nll(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll) {
    cpu::reference::token_nll(logits, rows, V, target, nll);
  }
  static void add_inplace(float* x, const float* y, int64_t n) {
    if constexpr (kReference) cpu::reference::add_inplace(x, y, n);
    else cpu::add_inplace(x, y, n);
  }
  static void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte,
                        const float* wpe, int64_t cols, float* out) {
    if constexpr (kReference) cpu::reference::embedding(ids, positions, rows, wte, wpe, cols, out);
    else cpu::embedding(ids, positions, rows, wte, wpe, cols, out);
  }
  static void causal_attention(const backend::AttentionArgs& a) {
    require_f32_on_cpu("attention", a.dtype);
    if constexpr (kReference) cpu::reference::causal_attention(a);
    else cpu::causal_attention(a);
  }
  // A copy: the fast one is exact, so the reference uses it too.
  static void store_kv(const void* qkv, DType dtype, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim,
                       void* cache_k, void* cache_v, int64_t capacity, int64_t past) {
    require_f32_on_cpu("KV cache", dtype);
    cpu::store_kv(static_cast<const float*>(qkv), batch, seq, n_head, head_dim, static_cast<float*>(cache_k),
                  static_cast<float*>(cache_v), capacity, past);
  }
  static void linear_op(const backend::LinearArgs& a) {
    if constexpr (kReference) cpu::reference::linear_op(a);
    else cpu::linear_op(a);
  }
  static void quant_linear_op(const backend::QuantLinearArgs& a) {
    if constexpr (kReference) cpu::reference::quant_linear_op(a);
    else cpu::quant_linear_op(a);
  }
  static void gather_rows_op(const backend::GatherArgs& a) {
    if constexpr (kReference) cpu::reference::gather_rows_op(a);
    else cpu::gather_rows_op(a);
  }
};
using FastCpu = CpuSet<false>;
using ReferenceCpu = CpuSet<true>;

#ifdef GPT2Q_CUDA
// The CUDA kernels on the calling thread's stream (core/device_memory.h).
struct FastCuda {
  static cudaStream_t stream() { return static_cast<cudaStream_t>(cuda_stream()); }
  static void layer_norm(const float* x, int64_t rows, int64_t cols, const float* w, const float* b, float eps,
                         void* y, DType y_dtype) {
    cuda::layer_norm(x, rows, cols, w, b, eps, y, y_dtype, stream());
  }
  static void gelu_new(void* x, DType dtype, int64_t n) { cuda::gelu_new(x, dtype, n, stream()); }
  static void gelu_erf(void* x, DType dtype, int64_t n) { cuda::gelu_erf(x, dtype, n, stream()); }
  static void softmax_rows(float* x, int64_t rows, int64_t cols) { cuda::softmax_rows(x, rows, cols, stream()); }
  static void add_inplace(float* x, const float* y, int64_t n) { cuda::add_inplace(x, y, n, stream()); }
  static void token_nll(const float* logits, int64_t rows, int64_t V, const int64_t* target, double* nll) {
    cuda::token_nll(logits, rows, V, target, nll, stream());
  }
  static void cast(const void* x, DType x_dtype, void* y, DType y_dtype, int64_t n) {
    cuda::convert(x, x_dtype, y, y_dtype, n, stream());
  }
  static void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte,
                        const float* wpe, int64_t cols, float* out) {
    cuda::embedding(ids, positions, rows, wte, wpe, cols, out, stream());
  }
  static void causal_attention(const backend::AttentionArgs& a) { cuda::causal_attention(a, stream()); }
  static void store_kv(const void* qkv, DType dtype, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim,
                       void* cache_k, void* cache_v, int64_t capacity, int64_t past) {
    cuda::store_kv(qkv, dtype, batch, seq, n_head, head_dim, cache_k, cache_v, capacity, past, stream());
  }
  static void linear_op(const backend::LinearArgs& a) { cuda::linear_op(a, stream()); }
  static void quant_linear_op(const backend::QuantLinearArgs& a) { cuda::quant_linear_op(a, stream()); }
  static void gather_rows_op(const backend::GatherArgs& a) { cuda::gather_rows_op(a, stream()); }
};
#endif

// Kernel families: which set runs on which device (void: none).
#ifdef GPT2Q_CUDA
using Fast = KernelFamily<FastCpu, FastCuda>;
#else
using Fast = KernelFamily<FastCpu, void>;
#endif
using Reference = KernelFamily<ReferenceCpu, void>;

template <typename F, typename Run>
void run_kernels(const char* op, Device device, Run&& run) {
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, device, std::forward<Run>(run));
}

}  // namespace gpt2q::ops::detail
