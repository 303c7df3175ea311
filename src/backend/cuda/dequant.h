#pragma once
// Decoding of gpt2q's quantized weight formats on the GPU: the building
// blocks of a fused dequantize-GEMM. Each output value is bit-identical to
// the CPU reference decoders in src/quant (dequantize_4bit,
// double_dequantize, dequantize_int8): the same fp32 operations, one
// rounding each, in the same order. dequant.cu is compiled with -fmad=false
// so that nvcc cannot fuse a multiply and an add into one FMA (the CPU build
// uses -ffp-contract=off for the same reason); denormals are kept (no
// -ftz), as on the CPU.
//
// The code tables are passed in by the caller (quant::code4_table,
// quant::dynamic_map_signed): the backend sits below the quant layer and
// keeps no copy of them. All pointers are device memory.
#include <cstdint>

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
                     float* out);

// Double quantization's block scales:
// absmax[i] = map[q[i]] · state2[i / nested_blocksize] + offset for i < n.
void dequantize_nested_absmax(const uint8_t* q, const float* state2, float offset, int64_t n,
                              int64_t nested_blocksize, const DynamicMapTable& map, float* absmax);

// out[r, c] = float(q[r, c] - zero_point) · scale for a [rows, cols] int8
// weight (row = output channel). Per channel (scale and zero_point hold
// `rows` values) or per tensor (one value each). zero_point may be null:
// symmetric, zero point 0.
void dequantize_int8(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows, int64_t cols,
                     bool per_channel, float* out);

}  // namespace gpt2q::cuda
