#pragma once
// Decoding of gpt2q's quantized weight formats on the GPU (the formats:
// backend/quant_format.h). Each decoded value is bit-identical to the CPU
// decoders (backend/cpu/quant_linear.h's quant_dequantize): the same fp32
// operations, one rounding each, in the same order; a 16-bit output is that
// fp32 value rounded once (as bitsandbytes' dequantize to half). dequant.cu
// is compiled with -fmad=false so that nvcc cannot fuse a multiply and an add
// into one FMA (the CPU build uses -ffp-contract=off for the same reason);
// denormals are kept (no -ftz), as on the CPU. All pointers are device memory.
#include <driver_types.h>

#include <cstdint>

#include "backend/quant_format.h"
#include "core/dtype.h"

namespace gpt2q::cuda {

// The 16 values of an NF4 or FP4 code, by code.
struct Code4Table {
  float value[16];
};
// The 256 values of bitsandbytes' signed dynamic map, by code.
struct DynamicMapTable {
  float value[256];
};

// out[i] = table[code_i] · absmax[i / blocksize] for i < n, where code_i is
// the high nibble of packed[i / 2] for even i and the low nibble for odd i
// (bitsandbytes' layout; ceil(n / 2) bytes). blocksize > 0.
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize, const Code4Table& table,
                     float* out, cudaStream_t stream);

// Double quantization's block scales:
// absmax[i] = map[q[i]] · state2[i / nested_blocksize] + offset for i < n.
void dequantize_nested_absmax(const uint8_t* q, const float* state2, float offset, int64_t n,
                              int64_t nested_blocksize, const DynamicMapTable& map, float* absmax,
                              cudaStream_t stream);

// out[r, c] = float(q[r, c] - zero_point) · scale for a [rows, cols] int8
// weight (row = output channel). Per channel (scale and zero_point hold
// `rows` values) or per tensor (one value each). zero_point may be null:
// symmetric, zero point 0.
void dequantize_int8(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows, int64_t cols,
                     bool per_channel, float* out, cudaStream_t stream);

// The whole weight W'[out, in] of any format into `out` of out_dtype (F32,
// F16, BF16). A double-quantized blockwise4 weight needs `absmax_scratch`
// with room for its blocks' scales (format.blocks() floats); otherwise it
// may be null.
void dequantize(const qformat::WeightView& w, void* out, DType out_dtype, float* absmax_scratch, cudaStream_t stream);

// out[i, :] = W'[idx[i], :] (or += with accumulate), fp32; idx checked by the
// caller. Same scratch rule as dequantize.
void dequantize_rows(const qformat::WeightView& w, const int64_t* idx, int64_t n, float* out, bool accumulate,
                     float* absmax_scratch, cudaStream_t stream);

}  // namespace gpt2q::cuda
