#include "quant/int8_affine.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/dequant_gemm.h"
#include "quant/int8_kernels.h"
#include "quant/rounding.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::quant {

size_t Int8Weight::bytes() const {
  return q.size() * sizeof(int8_t) + scale.size() * sizeof(float) + zero_point.size() * sizeof(int32_t);
}

std::string Int8Weight::format() const {
  std::string f = granularity == Int8Granularity::per_tensor ? "int8-tensor" : "int8-channel";
  if (scheme == Int8Scheme::symmetric) f += "-sym";
  return f;
}

Int8Params int8_params(const float* w, int64_t n, Int8Scheme scheme) {
  GPT2Q_CHECK(n > 0, "int8_params of an empty group");
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  Int8Params p;
  if (scheme == Int8Scheme::symmetric) {
    float absmax = std::max(std::fabs(lo), std::fabs(hi));
    p.scale = absmax == 0.0f ? 1.0f : absmax / 127.0f;
    p.zero_point = 0;
    return p;
  }
  if (hi == lo) {  // widen a constant range to include 0 so it stays representable
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
  }
  p.scale = (hi - lo) / 255.0f;
  if (p.scale == 0.0f) p.scale = 1.0f;
  float zp = round_half_even(-128.0f - lo / p.scale);
  // Only a range that is tiny next to its magnitude gets here (e.g. [1e6, 1e6 + 0.06]).
  if (!(std::fabs(zp) < 1.0e9f)) fail("int8 quantization: range [{}, {}] is too narrow for an affine zero point", lo, hi);
  p.zero_point = static_cast<int32_t>(zp);
  return p;
}

int8_t int8_code(float w, Int8Params p) {
  // zero_point is an exact integer in fp32 (|zp| < 2^24 for any finite range).
  float v = round_half_even(w / p.scale + static_cast<float>(p.zero_point));
  return static_cast<int8_t>(std::clamp(v, -128.0f, 127.0f));
}

Int8Weight quantize_int8(const float* w, int64_t out, int64_t in, Int8Scheme scheme, Int8Granularity granularity) {
  if (out <= 0 || in <= 0) fail("int8 quantization: empty weight [{}, {}]", out, in);
  const int64_t n = out * in;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) fail("int8 quantization: non-finite weight {} at index {}", w[i], i);
  Int8Weight r;
  r.out = out;
  r.in = in;
  r.scheme = scheme;
  r.granularity = granularity;
  r.q.resize(static_cast<size_t>(n));
  const int64_t groups = granularity == Int8Granularity::per_tensor ? 1 : out;
  const int64_t group_size = n / groups;
  for (int64_t g = 0; g < groups; ++g) {
    const float* src = w + g * group_size;
    Int8Params p = int8_params(src, group_size, scheme);
    r.scale.push_back(p.scale);
    if (scheme == Int8Scheme::affine) r.zero_point.push_back(p.zero_point);
    int8_t* dst = r.q.data() + g * group_size;
    for (int64_t i = 0; i < group_size; ++i) dst[i] = int8_code(src[i], p);
  }
  return r;
}

void dequantize_int8(const Int8Weight& w, float* out_in) {
  for (int64_t j = 0; j < w.out; ++j) {
    const float s = w.scale_of(j);
    const int32_t zp = w.zero_point_of(j);
    for (int64_t k = 0; k < w.in; ++k)
      out_in[j * w.in + k] = static_cast<float>(w.q[j * w.in + k] - zp) * s;
  }
}

void int8_matmul_reference(const Int8Weight& w, const float* bias, const float* x, int64_t rows, float* y) {
  std::vector<float> wd(static_cast<size_t>(w.out * w.in));
  dequantize_int8(w, wd.data());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < w.out; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < w.in; ++k) acc += x[i * w.in + k] * wd[j * w.in + k];
      y[i * w.out + j] = bias ? acc + bias[j] : acc;
    }
}

namespace {

// compute BF16: the integers the weights are made of enter the bf16 products
// exactly, the scale comes after. q - zero_point is exact in bf16 while
// |q - zp| <= 256, i.e. zp in [-128, 128] (every range that contains 0);
// otherwise (a range excluding 0) the product is split as
// x·q - zp·Σx, q exact in bf16 and Σx summed from the same bf16 values.
void int8_matmul_bf16(const Int8WeightGemm& g, const float* x, int64_t rows, float* y, Isa isa) {
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
#pragma omp parallel for schedule(static) if (rows * g.out >= cpu::kParallelMinStreamed)
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

}  // namespace

void int8_matmul(const Int8Weight& w, const float* bias, const float* x, int64_t rows, float* y, Isa isa,
                 DType compute) {
  require_isa(isa);
  // Per-row parameters as arrays so the kernels need not know the granularity.
  std::vector<float> scales(static_cast<size_t>(w.out));
  std::vector<int32_t> zps(static_cast<size_t>(w.out));
  for (int64_t j = 0; j < w.out; ++j) {
    scales[j] = w.scale_of(j);
    zps[j] = w.zero_point_of(j);
  }
  Int8WeightGemm g{x, rows, w.q.data(), zps.data(), scales.data(), bias, w.in, w.out, y};
  if (rows >= kTiledGemmMinRows && compute == DType::BF16) {
    int8_matmul_bf16(g, x, rows, y, isa);
    return;
  }
  if (rows >= kTiledGemmMinRows) {
    tiled_dequant_gemm(
        x, rows, w.in, w.out, bias, [&](int64_t j0, int64_t j1, float* dst) { int8_decode_rows(g, j0, j1, dst, isa); },
        y);
    return;
  }
  int8_weight_gemm(g, isa);
}

}  // namespace gpt2q::quant
