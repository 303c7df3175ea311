#pragma once
// LLM.int8() on the GPU, as bitsandbytes' Linear8bitLt runs it for inference
// and bit for bit as the CPU reference (backend/cpu/quant_llm_int8.h;
// quant/llm_int8.h has the formulas): activations rounded to fp16, outlier
// columns (|x16| >= threshold in any row) split off, row-wise absmax int8
// codes for the rest, an int8 GEMM with exact int32 sums (cuBLASLt's IMMA
// kernels), bnb's fp16 epilogue, and the outlier columns in fp32 from the
// unrounded activations. Every step but the int32 sums is the CPU's
// operation sequence with the _rn intrinsics (no contraction), so the
// results are the CPU's bits.
#include <driver_types.h>

#include <cstdint>

#include "backend/linear_args.h"

namespace gpt2q::cuda {

// Scratch for one product of `rows` rows of `in` columns (device memory the
// caller allocates): codes [rows, in] I8, sca [rows] F32, flags [in] U8,
// outlier columns [in] I32 and their count [1] I32, acc [rows, out] I32.
struct LlmInt8Scratch {
  int8_t* codes;
  float* sca;
  uint8_t* flags;
  int32_t* outlier_cols;
  int32_t* outlier_count;
  int32_t* acc;
};
size_t llm_int8_scratch_bytes(int64_t rows, int64_t in, int64_t out);
LlmInt8Scratch llm_int8_scratch(void* base, int64_t rows, int64_t in, int64_t out);

// Quantizes the activations: flags, outlier columns (ascending) and count,
// sca and codes.
void llm_int8_quantize_rows(const void* x, DType x_dtype, int64_t rows, int64_t in, float threshold,
                            const LlmInt8Scratch& s, cudaStream_t stream);
// acc = codes · CBᵀ in int32 (cuBLASLt, or an exact dp4a kernel where
// cuBLASLt has no int8 algorithm for the shape).
void llm_int8_gemm(const int8_t* codes, const int8_t* cb, int64_t rows, int64_t in, int64_t out, int32_t* acc,
                   cudaStream_t stream);
// y from acc: the epilogue, the outlier part, then the op's epilogue
// (activation or accumulate) — a.y, a.y_dtype, a.bias, a.epilogue of the call.
void llm_int8_finish(const backend::QuantLinearArgs& a, const LlmInt8Scratch& s, cudaStream_t stream);

}  // namespace gpt2q::cuda
