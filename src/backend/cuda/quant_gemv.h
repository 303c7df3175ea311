#pragma once
// The fused dequantize + GEMV of packed weights for a few activation rows
// (decode steps, tiny batches): y = epi(x · W'ᵀ + bias) reading each packed
// weight once, never writing a decoded copy. Developed in
// dev/cuda/quant_gemv.cu (candidates, validation, benchmark); the product
// holds its winners: one warp per 1 or 4 output rows, 16-byte code loads,
// NF4/FP4 through a 16-entry shared table, int8 through the 2^23
// magic-number conversion.
//
// Numbers: w' is the format's exact fp32 value (table[code] · absmax,
// float(q - zp) · scale, one rounding each, as the CPU decoders), the sums
// are fp32 FMAs over k, the bias, GELU and residual add in fp32, then one
// rounding to y's dtype. So it is the fp32 product of the decoded weight
// whatever x's dtype (16-bit x is read exactly); the decode-then-GEMM path
// with 16-bit compute rounds w' to 16 bits first, as bitsandbytes does.
#include <driver_types.h>

#include "backend/linear_args.h"

namespace gpt2q::cuda {

// Activation rows up to which quant_linear_op takes the fused GEMV; above,
// a decoded scratch and one tensor-core GEMM win (one launch per 8 rows
// re-reads the weight).
inline constexpr int64_t kQuantGemvMaxRows = 8;

// True when quant_gemv handles `a` (blockwise4 or int8_affine, rows within
// kQuantGemvMaxRows, sizes within int32); LLM.int8() keeps its own pipeline.
bool quant_gemv_supports(const backend::QuantLinearArgs& a);
// The product of quant_gemv_supports' arguments. No allocation, no host
// synchronisation: capturable.
void quant_gemv(const backend::QuantLinearArgs& a, cudaStream_t stream);

}  // namespace gpt2q::cuda
