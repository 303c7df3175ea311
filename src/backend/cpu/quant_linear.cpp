// Products, gathers and decodes of packed weights on the CPU (quant_linear.h).
#include "backend/cpu/quant_linear.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dequant_gemm.h"
#include "backend/cpu/quant_blockwise4_kernels.h"
#include "backend/cpu/quant_int8_kernels.h"
#include "backend/cpu/quant_llm_int8.h"
#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"

// Dequantized values are defined operation by operation (quant_format.h):
// GCC would otherwise fuse a * b + c into one FMA.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::cpu {

namespace {

using qformat::Scheme;
using qformat::WeightView;

// Every block's absmax as fp32 (decoded when double-quantized).
std::vector<float> block_absmax(const WeightView& w) {
  const qformat::Format& f = w.format;
  const int64_t n = f.blocks();
  if (!f.nested) return std::vector<float>(w.scales, w.scales + n);
  std::vector<float> a(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; ++b)
    a[b] = qformat::nested_absmax(qformat::kDynamicMapSigned[w.nested_codes[b]],
                                  w.nested_scales[b / f.nested_blocksize], f.nested_offset);
  return a;
}

// int8_affine's scale and zero point of output row j.
float int8_scale(const WeightView& w, int64_t j) { return w.scales[w.format.per_channel ? j : 0]; }
int32_t int8_zero_point(const WeightView& w, int64_t j) {
  return w.zero_points ? w.zero_points[w.format.per_channel ? j : 0] : 0;
}

// Rows [j0, j1) of the dequantized weight into dst [j1 - j0, in].
void decode_rows(const WeightView& w, const std::vector<float>& absmax, int64_t j0, int64_t j1, float* dst) {
  const qformat::Format& f = w.format;
  switch (f.scheme) {
    case Scheme::blockwise4: {
      const float* table = qformat::code4_values(f.code);
      for (int64_t e = j0 * f.in; e < j1 * f.in; ++e)
        dst[e - j0 * f.in] = table[qformat::code4_at(w.packed4(), e)] * absmax[e / f.blocksize];
      return;
    }
    case Scheme::int8_affine:
      for (int64_t j = j0; j < j1; ++j) {
        const float s = int8_scale(w, j);
        const int32_t zp = int8_zero_point(w, j);
        for (int64_t k = 0; k < f.in; ++k)
          dst[(j - j0) * f.in + k] = static_cast<float>(w.int8_codes()[j * f.in + k] - zp) * s;
      }
      return;
    case Scheme::llm_int8:
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t k = 0; k < f.in; ++k)
          dst[(j - j0) * f.in + k] =
              (static_cast<float>(w.int8_codes()[j * f.in + k]) * w.scales[j]) * qformat::kInv127;
      return;
    case Scheme::group_int: {
      // Per output row: its groups' scales and zero points once, then each
      // input's code (qweight's words for one output are `out` apart, so a
      // tile of consecutive rows reads each cache line for 16 of them).
      std::vector<float> scale(static_cast<size_t>(f.groups));
      std::vector<int32_t> zero(static_cast<size_t>(f.groups));
      for (int64_t j = j0; j < j1; ++j) {
        for (int64_t g = 0; g < f.groups; ++g) {
          scale[g] = half_to_float(w.scales_f16[g * f.out + j]);
          zero[g] = qformat::group_zero(w, g, j);
        }
        float* d = dst + (j - j0) * f.in;
        for (int64_t k = 0; k < f.in; ++k) {
          const int32_t g = w.g_idx[k];
          d[k] = scale[g] * static_cast<float>(qformat::group_code(w, k, j) - zero[g]);
        }
      }
      return;
    }
  }
}

// y = x · W'ᵀ (+ bias), the dequantized weight and fp32 dots in index order.
void dequantized_reference(const WeightView& w, const float* x, int64_t rows, const float* bias, float* y) {
  const int64_t out = w.format.out, in = w.format.in;
  std::vector<float> wd(static_cast<size_t>(out * in));
  quant_dequantize(w, wd.data());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < out; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < in; ++k) acc += x[i * in + k] * wd[j * in + k];
      y[i * out + j] = bias ? acc + bias[j] : acc;
    }
}

void blockwise4_linear(const WeightView& w, const float* x, int64_t rows, const float* bias, float* y, Isa isa,
                       DType compute) {
  const qformat::Format& f = w.format;
  if (f.in % f.blocksize != 0 || f.blocksize % 32 != 0) {
    if (rows >= kTiledGemmMinRows && compute == DType::BF16) {
      // Blocks straddle rows: decode the whole weight once, tile from it.
      std::vector<float> wd(static_cast<size_t>(f.numel()));
      quant_dequantize(w, wd.data());
      tiled_dequant_gemm(
          x, rows, f.in, f.out, bias,
          [&](int64_t j0, int64_t j1, float* dst) { std::copy(&wd[j0 * f.in], &wd[j1 * f.in], dst); }, y,
          TiledGemmOptions{compute});
      return;
    }
    dequantized_reference(w, x, rows, bias, y);
    return;
  }
  const int64_t half = f.in / 2;
  const std::vector<float> absmax = block_absmax(w);
  const float* table = qformat::code4_values(f.code);
  if (rows >= kTiledGemmMinRows) {
    // x in split order (even elements, then odd, per row), the order
    // blockwise4_decode_rows writes each weight row in.
    // (A scratch tensor: large batches reuse the cached block instead of
    // faulting in a fresh one on every call.)
    Tensor xs_t = scratch_tensor({rows, f.in}, DType::F32);
    float* xs = xs_t.data<float>();
#pragma omp parallel for schedule(static) if (rows * f.in >= (1 << 18))
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t m = 0; m < half; ++m) {
        xs[i * f.in + m] = x[i * f.in + 2 * m];
        xs[i * f.in + half + m] = x[i * f.in + 2 * m + 1];
      }
    const Blockwise4Gemm codes{nullptr, nullptr, 0, w.packed4(), absmax.data(), table, f.in, f.out, f.blocksize,
                               nullptr};
    tiled_dequant_gemm(
        xs, rows, f.in, f.out, bias,
        [&](int64_t j0, int64_t j1, float* dst) { blockwise4_decode_rows(codes, j0, j1, dst, isa); }, y,
        TiledGemmOptions{compute});
    return;
  }
  std::vector<float> xe(static_cast<size_t>(rows * half)), xo(static_cast<size_t>(rows * half));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t m = 0; m < half; ++m) {
      xe[i * half + m] = x[i * f.in + 2 * m];
      xo[i * half + m] = x[i * f.in + 2 * m + 1];
    }
  Blockwise4Gemm g{xe.data(), xo.data(), rows, w.packed4(), absmax.data(), table, f.in, f.out, f.blocksize, y};
  blockwise4_gemm(g, isa);
  if (bias)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < f.out; ++j) y[i * f.out + j] += bias[j];
}

// compute BF16: the integers the weights are made of enter the bf16 products
// exactly, the scale comes after. q - zero_point is exact in bf16 while
// |q - zp| <= 256, i.e. zp in [-128, 128] (every range that contains 0);
// otherwise (a range excluding 0) the product is split as
// x·q - zp·Σx, q exact in bf16 and Σx summed from the same bf16 values.
void int8_linear_bf16(const Int8WeightGemm& g, const float* x, int64_t rows, float* y, Isa isa) {
  bool zp_fits = true;
  for (int64_t j = 0; j < g.out; ++j) zp_fits = zp_fits && g.zero_point[j] >= -128 && g.zero_point[j] <= 128;
  const std::vector<float> ones(static_cast<size_t>(g.out), 1.0f);
  const std::vector<int32_t> zeros(static_cast<size_t>(g.out), 0);
  Int8WeightGemm integers = g;
  integers.scale = ones.data();
  if (!zp_fits) integers.zero_point = zeros.data();
  TiledGemmOptions opt;
  opt.compute = DType::BF16;
  opt.col_scale = g.scale;
  tiled_dequant_gemm(
      x, rows, g.in, g.out, zp_fits ? g.bias : nullptr,
      [&](int64_t j0, int64_t j1, float* dst) { int8_decode_rows(integers, j0, j1, dst, isa); }, y, opt);
  if (zp_fits) return;
#pragma omp parallel for schedule(static) if (rows * g.out >= kParallelMinStreamed)
  for (int64_t i = 0; i < rows; ++i) {
    double sum = 0;
    for (int64_t k = 0; k < g.in; ++k) sum += bf16_to_float(float_to_bf16(x[i * g.in + k]));
    const auto s = static_cast<float>(sum);
    for (int64_t j = 0; j < g.out; ++j) {
      const float v = y[i * g.out + j] - g.scale[j] * (static_cast<float>(g.zero_point[j]) * s);
      y[i * g.out + j] = g.bias ? v + g.bias[j] : v;
    }
  }
}

void int8_affine_linear(const WeightView& w, const float* x, int64_t rows, const float* bias, float* y, Isa isa,
                        DType compute) {
  const qformat::Format& f = w.format;
  // Per-row parameters as arrays so the kernels need not know the granularity.
  std::vector<float> scales(static_cast<size_t>(f.out));
  std::vector<int32_t> zps(static_cast<size_t>(f.out));
  for (int64_t j = 0; j < f.out; ++j) {
    scales[j] = int8_scale(w, j);
    zps[j] = int8_zero_point(w, j);
  }
  Int8WeightGemm g{x, rows, w.int8_codes(), zps.data(), scales.data(), bias, f.in, f.out, y};
  if (rows >= kTiledGemmMinRows && compute == DType::BF16) {
    int8_linear_bf16(g, x, rows, y, isa);
    return;
  }
  if (rows >= kTiledGemmMinRows) {
    tiled_dequant_gemm(
        x, rows, f.in, f.out, bias, [&](int64_t j0, int64_t j1, float* dst) { int8_decode_rows(g, j0, j1, dst, isa); },
        y);
    return;
  }
  int8_weight_gemm(g, isa);
}

}  // namespace

void quant_dequantize(const WeightView& w, float* out_in) {
  const std::vector<float> absmax = w.format.scheme == Scheme::blockwise4 ? block_absmax(w) : std::vector<float>{};
  decode_rows(w, absmax, 0, w.format.out, out_in);
}

void quant_gather_rows(const WeightView& w, const int64_t* idx, int64_t n, float* out, bool accumulate) {
  const int64_t C = w.format.in;
  const std::vector<float> absmax = w.format.scheme == Scheme::blockwise4 ? block_absmax(w) : std::vector<float>{};
#pragma omp parallel for schedule(static) if (n * C >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(C));
    decode_rows(w, absmax, idx[i], idx[i] + 1, row.data());
    float* o = out + i * C;
    for (int64_t k = 0; k < C; ++k) o[k] = accumulate ? o[k] + row[k] : row[k];
  }
}

void quant_linear_reference(const WeightView& w, const float* x, int64_t rows, const float* bias, float* y,
                            const QuantLinearOptions& options) {
  if (w.format.scheme == Scheme::llm_int8)
    return llm_int8_linear_reference(w, x, rows, bias, options.llm_int8_threshold, options.llm_int8_fp32_epilogue, y);
  dequantized_reference(w, x, rows, bias, y);
}

void quant_linear(const WeightView& w, const float* x, int64_t rows, const float* bias, float* y,
                  const QuantLinearOptions& options, Isa isa) {
  require_isa(isa);
  if (rows == 0) return;
  switch (w.format.scheme) {
    case Scheme::blockwise4:
      return blockwise4_linear(w, x, rows, bias, y, isa, options.compute);
    case Scheme::int8_affine:
      return int8_affine_linear(w, x, rows, bias, y, isa, options.compute);
    case Scheme::llm_int8:
      return llm_int8_linear(w, x, rows, bias, options.llm_int8_threshold, options.llm_int8_fp32_epilogue, y, isa);
    case Scheme::group_int:
      // Decoded a tile at a time at every row count (no fused few-row
      // kernel yet: the weight is read once per call either way).
      return tiled_dequant_gemm(
          x, rows, w.format.in, w.format.out, bias,
          [&](int64_t j0, int64_t j1, float* dst) { decode_rows(w, {}, j0, j1, dst); }, y,
          TiledGemmOptions{options.compute});
  }
}

}  // namespace gpt2q::cpu
