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

namespace gpt2q::quant {

inline constexpr int64_t kTiledGemmMinRows = 16;

// decode(j0, j1, dst): rows j0..j1 of the fp32 weight [out, in] into
// dst [j1 - j0, in], each row in the element order of x.
using DecodeTile = std::function<void(int64_t j0, int64_t j1, float* dst)>;

// y[rows, out] = x[rows, in] · Wᵀ (+ bias[out] when not null), overwriting y.
// Tiles are spread over the OpenMP threads (sgemm runs single-threaded inside
// each); every output is computed by one sgemm call whatever the thread
// count, so results do not depend on it.
void tiled_dequant_gemm(const float* x, int64_t rows, int64_t in, int64_t out, const float* bias,
                        const DecodeTile& decode, float* y);

}  // namespace gpt2q::quant
