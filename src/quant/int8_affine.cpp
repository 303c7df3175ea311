#include "quant/int8_affine.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/quant_linear.h"
#include "core/error.h"
#include "core/rounding.h"

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
  // Only a range that is tiny next to its magnitude gets here (e.g. [100, 100.7]).
  if (!(std::fabs(zp) <= static_cast<float>(kMaxInt8ZeroPoint)))
    fail("int8 quantization: range [{}, {}] is too narrow for an affine zero point", lo, hi);
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

qformat::WeightView view_of(const Int8Weight& w) {
  qformat::WeightView v;
  v.format.scheme = qformat::Scheme::int8_affine;
  v.format.out = w.out;
  v.format.in = w.in;
  v.format.per_channel = w.granularity == Int8Granularity::per_channel;
  v.format.symmetric = w.zero_point.empty();
  v.codes = w.q.data();
  v.scales = w.scale.data();
  v.zero_points = w.zero_point.empty() ? nullptr : w.zero_point.data();
  return v;
}

void dequantize_int8(const Int8Weight& w, float* out_in) { cpu::quant_dequantize(view_of(w), out_in); }

void int8_matmul_reference(const Int8Weight& w, const float* bias, const float* x, int64_t rows, float* y) {
  cpu::quant_linear_reference(view_of(w), x, rows, bias, y);
}

void int8_matmul(const Int8Weight& w, const float* bias, const float* x, int64_t rows, float* y, Isa isa,
                 DType compute) {
  cpu::QuantLinearOptions opt;
  opt.compute = compute;
  cpu::quant_linear(view_of(w), x, rows, bias, y, opt, isa);
}

}  // namespace gpt2q::quant
