#pragma once
// Every matrix product of the CUDA backend goes through one cuBLASLt call:
// row-major y[rows, out] = x[rows, in] · W (+ bias) (+ beta · y), then an
// optional GELU — the epilogues cuBLASLt fuses (llm.c's GELU into the
// matmul; the residual add as beta = 1). fp32 (CUBLAS_COMPUTE_32F: full fp32
// multiply-add, never TF32), fp16 / bf16 operands with fp32 sums, and int8
// with exact int32 sums (LLM.int8()). fp32 operands can also be multiplied
// as bf16 on the tensor cores with fp32 sums and an fp32 y (fast_bf16: each
// operand rounded to bf16 into a scratch, as PyTorch's bf16 autocast casts a
// Linear's input and weight): the bf16 trainer's products. A call can be a
// strided batch of independent products (the attention's per-head products
// in training).
#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstdint>

namespace gpt2q::cuda {

enum class GemmActivation : uint8_t { none, gelu_tanh };

struct GemmCall {
  const void* x = nullptr;  // [rows, in], or [in, rows] when x_in_rows
  cudaDataType_t x_type = CUDA_R_32F;
  bool x_in_rows = false;  // x stored transposed: the product reads xᵀ (a weight gradient: Xᵀ · dY)
  const void* w = nullptr;  // [in, out], or [out, in] when w_out_in
  cudaDataType_t w_type = CUDA_R_32F;
  bool w_out_in = false;
  int64_t rows = 0, in = 0, out = 0;
  const void* bias = nullptr;  // [out] (null: none)
  bool bias_f32 = false;       // the bias is F32 (else of y's type)
  void* y = nullptr;           // [rows, out]
  cudaDataType_t y_type = CUDA_R_32F;
  bool accumulate = false;  // y += ... (beta = 1)
  GemmActivation activation = GemmActivation::none;
  bool fast_bf16 = false;  // F32 x, w and y, multiplied as bf16 (fp32 sums)
  // A strided batch: product i reads x + i·batch_stride_x, w + i·batch_stride_w
  // and writes y + i·batch_stride_y (strides in elements). No bias then.
  int64_t batch = 1, batch_stride_x = 0, batch_stride_w = 0, batch_stride_y = 0;
};

// How the calling thread's products of fp32 operands run: exact fp32
// multiply-adds (the default), or as bf16 on the tensor cores with fp32 sums
// (fast_bf16 forced on for every all-F32 call). The bf16 trainer sets it for
// its steps (ops::Fp32ProductsScope).
enum class Fp32Products : uint8_t { exact, bf16 };
Fp32Products fp32_products();
void set_fp32_products(Fp32Products p);

// Queues the product on `stream`. Errors (an unsupported combination, no
// algorithm) are gpt2q::Error naming the shapes and types.
void gemm(const GemmCall& call, cudaStream_t stream);

// Frees the calling thread's cuBLASLt handle, plans and 32 MiB workspace
// (queued on its stream: call it once the GEMMs are done); the next gemm()
// makes new ones. Tests call it before checking that nothing is left
// allocated on the device.
void release_gemm_context();

}  // namespace gpt2q::cuda
