#pragma once
// The kernel sets the ops dispatch to (internal to the ops layer): for each
// device a struct of static kernels with the same member names, so that one
// generic op body (ops.cpp, linear_ops.cpp) serves every device and the
// argument checks are written once; and the kernel families (fast,
// reference) that name a set per device (void: none).
#include <utility>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/linear_ops.h"
#include "backend/cpu/reference_ops.h"
#include "ops/op_checks.h"

#ifdef GPT2Q_CUDA
#include "backend/cuda/cuda_kernels.h"
#endif

namespace gpt2q::ops::detail {

struct FastCpu {
  static constexpr auto linear = cpu::linear;
  static void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c) {
    cpu::sgemm_nt(m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
  }
  static constexpr auto layer_norm = cpu::layer_norm;
  static constexpr auto gelu_new = cpu::gelu_new;
  static constexpr auto gelu_erf = cpu::gelu_erf;
  static constexpr auto softmax_rows = cpu::softmax_rows;
  static constexpr auto add_inplace = cpu::add_inplace;
  static constexpr auto embedding = cpu::embedding;
  static constexpr auto causal_attention = cpu::causal_attention;
  static constexpr auto store_kv = cpu::store_kv;
  static constexpr auto linear_op = cpu::linear_op;
  static constexpr auto quant_linear_op = cpu::quant_linear_op;
  static constexpr auto gather_rows_op = cpu::gather_rows_op;
};

struct ReferenceCpu {
  static constexpr auto linear = cpu::reference::linear;
  static constexpr auto matmul_nt = cpu::reference::matmul_nt;
  static constexpr auto layer_norm = cpu::reference::layer_norm;
  static constexpr auto gelu_new = cpu::reference::gelu_new;
  static constexpr auto gelu_erf = cpu::reference::gelu_erf;
  static constexpr auto softmax_rows = cpu::reference::softmax_rows;
  static constexpr auto add_inplace = cpu::reference::add_inplace;
  static constexpr auto embedding = cpu::reference::embedding;
  static constexpr auto causal_attention = cpu::reference::causal_attention;
  static constexpr auto store_kv = cpu::store_kv;  // a copy: the fast one is exact
  static constexpr auto linear_op = cpu::reference::linear_op;
  static constexpr auto quant_linear_op = cpu::reference::quant_linear_op;
  static constexpr auto gather_rows_op = cpu::reference::gather_rows_op;
};

#ifdef GPT2Q_CUDA
struct FastCuda {
  static constexpr auto linear = cuda::linear;
  static constexpr auto matmul_nt = cuda::matmul_nt;
  static constexpr auto layer_norm = cuda::layer_norm;
  static constexpr auto gelu_new = cuda::gelu_new;
  static constexpr auto gelu_erf = cuda::gelu_erf;
  static constexpr auto softmax_rows = cuda::softmax_rows;
  static constexpr auto add_inplace = cuda::add_inplace;
  static constexpr auto embedding = cuda::embedding;
  static constexpr auto causal_attention = cuda::causal_attention;
  static constexpr auto store_kv = cuda::store_kv;
  static constexpr auto linear_op = cuda::linear_op;
  static constexpr auto quant_linear_op = cuda::quant_linear_op;
  static constexpr auto gather_rows_op = cuda::gather_rows_op;
};
#endif

// Kernel families: which set runs on which device (void: none).
struct Fast {
  using Cpu = FastCpu;
#ifdef GPT2Q_CUDA
  using Cuda = FastCuda;
#else
  using Cuda = void;
#endif
};
struct Reference {
  using Cpu = ReferenceCpu;
  using Cuda = void;
};

template <typename F, typename Run>
void run_kernels(const char* op, Device device, Run&& run) {
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, device, std::forward<Run>(run));
}

}  // namespace gpt2q::ops::detail
