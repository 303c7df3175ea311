#pragma once
// NF4 / FP4 blockwise 4-bit quantization as bitsandbytes' CUDA kernel does it
// (csrc kQuantizeBlockwise with dQuantizeNF4 / dQuantizeFP4; functional.py
// quantize_4bit, dequantize_4bit).
//
// The weight [out, in] (nn.Linear order; GPT-2's Conv1D [in, out] is
// transposed first) is flattened and cut into blocks of `blocksize` values
// (the last block may be shorter). Per block:
//   absmax = max |w|                     (fp32, stored)
//   s      = w · (1 / absmax)            (fp32 reciprocal, then product)
//   code   = NF4: number of thresholds t with s > t (t = the kernel's float
//            literals, the midpoints of the table); FP4: sign bit (s < 0) plus
//            the magnitude code of |s| from the kernel's thresholds.
// A value exactly on a threshold takes the code below it. An all-zero block
// has absmax 0 and s = NaN, which the kernel's comparisons send to code 0.
// Two codes per byte: element 2j in the high nibble, 2j+1 in the low; an odd
// element count pads the last low nibble with the code of 0 · (1 / absmax).
// Dequantized: w' = table[code] · absmax (fp32).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/cpu/isa.h"
#include "backend/quant_format.h"
#include "core/dtype.h"
#include "quant/double_quant.h"

namespace gpt2q::quant {

using qformat::Code4;  // nf4, fp4 (backend/quant_format.h)
using cpu::Isa;
using cpu::best_isa;

// Dequantization tables by code (bnb's nf4/fp4 LUTs in csrc/kernels.cu).
const std::array<float, 16>& code4_table(Code4 type);
// Code of a scaled value (see above); NaN gives 0.
uint8_t quantize_nf4(float s);
uint8_t quantize_fp4(float s);
const char* code4_name(Code4 type);

struct Blockwise4Options {
  Code4 type = Code4::nf4;
  int64_t blocksize = 64;     // 32, 64, ..., 4096 (bnb's allowed sizes)
  bool double_quant = false;  // bnb_4bit_use_double_quant
};

struct Blockwise4Weight {
  Code4 type = Code4::nf4;
  int64_t out = 0, in = 0, blocksize = 64;
  std::vector<uint8_t> packed;              // ceil(out·in / 2) bytes
  std::vector<float> absmax;                // [num_blocks]; empty when `nested` holds them
  std::optional<DoubleQuantAbsmax> nested;  // double-quantized absmax

  int64_t numel() const { return out * in; }
  int64_t num_blocks() const { return (numel() + blocksize - 1) / blocksize; }
  uint8_t code(int64_t i) const { return (i & 1) ? packed[i >> 1] & 0x0f : packed[i >> 1] >> 4; }
  // Every block's absmax as fp32 (decoded from `nested` when double-quantized).
  std::vector<float> block_absmax() const;
  // Bytes held: packed codes + absmax (or the nested codes, scales and offset).
  size_t bytes() const;
  std::string format() const;  // "nf4", "fp4", "nf4-dq", "fp4-dq"
};

// The weight's parts as a view for the kernels (host memory, borrowed from w).
qformat::WeightView view_of(const Blockwise4Weight& w);

// Throws gpt2q::Error for a blocksize bnb does not allow or non-finite weights.
Blockwise4Weight quantize_4bit(const float* w, int64_t out, int64_t in, const Blockwise4Options& opt);
void dequantize_4bit(const Blockwise4Weight& w, float* out_in);  // writes [out, in]

// y[rows, out] = x[rows, in] · w'ᵀ (+ bias), w' the dequantized weight.
// Reference: dequantize, then fp32 dot products in index order.
void blockwise4_matmul_reference(const Blockwise4Weight& w, const float* bias, const float* x, int64_t rows,
                                 float* y);
// Fast: codes decoded in registers by table lookup and fused with the dot
// products (fewer than kTiledGemmMinRows rows: decoding), or decoded a tile
// at a time into fp32 for sgemm (more rows: prompts, batches;
// backend/cpu/dequant_gemm.h). Each decoded weight equals the reference's bit for
// bit; only the fp32 summation order differs. Needs in % blocksize == 0
// (every weight row starts a block), else it runs the reference.
// compute BF16 (rows >= kTiledGemmMinRows only): x and each dequantized
// weight rounded to bf16, products summed in fp32, as bnb's Linear4bit with
// bnb_4bit_compute_dtype=bfloat16 (dequantize to bf16, bf16 matmul).
void blockwise4_matmul(const Blockwise4Weight& w, const float* bias, const float* x, int64_t rows, float* y,
                       Isa isa = best_isa(), DType compute = DType::F32);

}  // namespace gpt2q::quant
