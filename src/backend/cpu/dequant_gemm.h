#pragma once
// The product of many activation rows (a prompt, a batch) with a packed
// weight: tiles of the weight are decoded into a small fp32 buffer per thread
// and handed to sgemm. Each decoded value is bit for bit the reference's
// dequantized weight, so this is "dequantize, then fp32 matmul" done a tile
// at a time: the packed weight is still all that is held, and sgemm's
// register blocking does the arithmetic. Below kTiledGemmMinRows rows the
// fused kernels (one pass over the codes, decoded in registers) are faster:
// there the cost is reading the weight, not multiplying.
#include <cstdint>
#include <functional>

#include "core/dtype.h"

namespace gpt2q::cpu {

inline constexpr int64_t kTiledGemmMinRows = 16;

// decode(j0, j1, dst): rows j0..j1 of the fp32 weight [out, in] into
// dst [j1 - j0, in], each row in the element order of x.
using DecodeTile = std::function<void(int64_t j0, int64_t j1, float* dst)>;

// The arithmetic of the product. F32: fp32 products and sums (sgemm on the
// decoded fp32 tile). BF16: x and each decoded weight rounded to bf16, products
// summed in fp32 — a matmul with compute dtype bfloat16 as PyTorch and
// bitsandbytes (bnb_4bit_compute_dtype) do it; about twice sgemm's speed where
// the CPU has AVX512_BF16 (backend/cpu/gemm_bf16.h), else the same values
// through sgemm on bf16-rounded operands (cpu::set_bf16_gemm_emulation
// forces that path for tests).
struct TiledGemmOptions {
  DType compute = DType::F32;  // F32 or BF16
  // Optional [out]: y[i, j] = col_scale[j] · (x · decodedᵀ)[i, j] + bias[j].
  // Lets int8 decode its integer codes (exact in bf16) and scale afterwards.
  const float* col_scale = nullptr;
};

// y[rows, out] = x[rows, in] · Wᵀ (+ bias[out] when not null), overwriting y.
// Tiles are spread over the OpenMP threads (each GEMM runs single-threaded
// inside them); every output is computed by one GEMM call whatever the
// thread count, so results do not depend on it.
void tiled_dequant_gemm(const float* x, int64_t rows, int64_t in, int64_t out, const float* bias,
                        const DecodeTile& decode, float* y, const TiledGemmOptions& options = {});

}  // namespace gpt2q::cpu
