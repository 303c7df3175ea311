#pragma once
// int8 "from scratch" (weight-only): per-tensor or per-output-channel, affine
// or symmetric. Weights are [out, in] (nn.Linear order), row = output channel.
//
//   affine:    scale = (max - min) / 255
//              zero_point = round(-128 - min / scale)
//              q = clamp(round(w / scale + zero_point), -128, 127)
//   symmetric: scale = absmax / 127, zero_point = 0, q = clamp(round(w / scale), -128, 127)
//   dequantized: w' = (q - zero_point) * scale
//
// All arithmetic in fp32, one rounding per operation as written, round() is
// half-to-even (torch.round). A constant range (max == min) is widened to
// include 0; a zero-width range (all zeros) gets scale 1. The zero point can
// fall outside [-128, 127] when the range excludes 0, so it is kept as int32.
// docs/quantization.md has the details.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cpu/isa.h"
#include "backend/quant_format.h"
#include "core/dtype.h"

namespace gpt2q::quant {

using cpu::Isa;
using cpu::best_isa;

enum class Int8Scheme { affine, symmetric };
enum class Int8Granularity { per_tensor, per_channel };

struct Int8Weight {
  int64_t out = 0, in = 0;
  Int8Scheme scheme = Int8Scheme::affine;
  Int8Granularity granularity = Int8Granularity::per_tensor;
  std::vector<int8_t> q;            // [out, in]
  std::vector<float> scale;         // 1 (per tensor) or out (per channel)
  std::vector<int32_t> zero_point;  // same count as scale; empty when symmetric

  float scale_of(int64_t row) const { return scale[scale.size() == 1 ? 0 : row]; }
  int32_t zero_point_of(int64_t row) const {
    return zero_point.empty() ? 0 : zero_point[zero_point.size() == 1 ? 0 : row];
  }
  // Bytes held: codes + scales + zero points.
  size_t bytes() const;
  std::string format() const;  // "int8-tensor", "int8-tensor-sym", "int8-channel", "int8-channel-sym"
};

// The largest |zero point| the quantizer writes and the checkpoint reader
// accepts. A zero point outside [-128, 127] comes from a group whose range
// excludes 0; beyond ±2^15 that range is under 1/128 of its distance from 0
// (e.g. [100, 100.7]), which no weight tensor looks like, so such a value in
// a file is corruption, and the quantizer refuses such a group.
inline constexpr int32_t kMaxInt8ZeroPoint = 1 << 15;

// Quantization parameters for one group of values (a tensor or a row).
struct Int8Params {
  float scale = 1.0f;
  int32_t zero_point = 0;
};
Int8Params int8_params(const float* w, int64_t n, Int8Scheme scheme);
int8_t int8_code(float w, Int8Params p);

// The weight's parts as a view for the kernels (host memory, borrowed from w).
qformat::WeightView view_of(const Int8Weight& w);

// Throws gpt2q::Error on non-finite weights.
Int8Weight quantize_int8(const float* w, int64_t out, int64_t in, Int8Scheme scheme, Int8Granularity granularity);
void dequantize_int8(const Int8Weight& w, float* out_in);  // writes [out, in]

// y[rows, out] = x[rows, in] · w'ᵀ (+ bias), w' the dequantized weight.
// Reference: dequantize, then fp32 dot products in index order.
void int8_matmul_reference(const Int8Weight& w, const float* bias, const float* x, int64_t rows, float* y);
// Fast: fewer than kTiledGemmMinRows rows, y = scale · Σ x·(q - zero_point)
// (+ bias), threaded over output channels; more rows, dequantized tiles and
// sgemm (backend/cpu/dequant_gemm.h). Same value up to fp32 rounding order.
// compute BF16 (rows >= kTiledGemmMinRows only): x rounded to bf16 times the
// integer codes (exact in bf16), summed in fp32, then scaled: the weights
// lose nothing, the activations bf16's 8 bits. For a zero point outside
// [-128, 128] (a range excluding 0) as x·q - zp·Σx.
void int8_matmul(const Int8Weight& w, const float* bias, const float* x, int64_t rows, float* y,
                 Isa isa = best_isa(), DType compute = DType::F32);

}  // namespace gpt2q::quant
