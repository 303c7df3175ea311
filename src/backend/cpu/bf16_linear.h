#pragma once
// A dense Linear with compute dtype bf16 on the CPU (`--compute-dtype bf16`
// on an fp32 / fp16 / bf16 checkpoint). The numerics are those of the
// quantized formats' bf16 compute (dequant_gemm.h, quant_linear.h), with the
// weight rounded to bf16 once instead of decoded:
//   W' = bf16(W), rounded to nearest even when the layer loads (torch's
//        .to(torch.bfloat16); subnormals kept);
//   rows >= kTiledGemmMinRows (a prompt, a batch):
//        y = bf16(x) · W' + b, products exact in fp32, sums in fp32;
//   fewer rows (decoding a token):
//        y = x · W' + b with x in fp32, fp32 products and sums
// (the quantized formats also keep fp32 activations below 16 rows, where the
// cost is reading the weight, not multiplying). bf16(x) is x rounded to
// nearest even, subnormals flushed to zero where the AVX512_BF16 conversion
// runs (gemm_bf16.h). Where the CPU lacks AVX512_BF16 the same rounded
// operands go through sgemm, as the quantized formats do: the same values
// within fp32 summation error, at fp32 speed.
//
// The weight is held only in gemm_bf16.h's panel layout (16 output
// channels per panel, k in pairs), so a prompt's product runs straight from
// it; the fp32 paths decode a tile of it at a time.
#include <cstdint>

#include "core/dtype.h"

namespace gpt2q::cpu {

// uint16 elements of the packed weight of a [in, out] Linear.
int64_t bf16_linear_packed_elems(int64_t in, int64_t out);

// w [in, out] (GPT-2's Conv1D layout) of F32, F16 or BF16 -> dst (of
// bf16_linear_packed_elems), rounded to nearest even. Scalar conversion,
// bit for bit float_to_bf16 of each value; runs once per layer.
void bf16_linear_pack_weight(const void* w, DType w_dtype, int64_t in, int64_t out, uint16_t* dst);

// y[rows, out] = the product above (+ bias[out] when not null), overwriting y.
void bf16_linear(const float* x, int64_t rows, const uint16_t* packed, int64_t in, int64_t out, const float* bias,
                 float* y);

// The scalar reference of the definition, from the packed weight: products
// and sums in double, rounded to fp32 at the end. Any correct evaluation is
// within fp32 summation error of it.
void bf16_linear_reference(const float* x, int64_t rows, const uint16_t* packed, int64_t in, int64_t out,
                           const float* bias, float* y);

// W'[k, j] read back from the packed weight (exact), for tests and the fp32 paths.
float bf16_linear_weight_at(const uint16_t* packed, int64_t in, int64_t k, int64_t j);

}  // namespace gpt2q::cpu
