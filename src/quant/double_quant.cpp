#include "quant/double_quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::quant {
namespace {

// torch.linspace(start, end, steps, dtype=float32) on the CPU: fp32 step,
// the first half counted up from start, the second half down from end, each
// value with one rounding (torch's kernel fuses the multiply-add; checked
// against torch for every step count the map uses).
std::vector<float> linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> v(static_cast<size_t>(steps));
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    v[i] = i < halfway ? std::fma(step, static_cast<float>(i), start)
                       : std::fma(-step, static_cast<float>(steps - i - 1), end);
  return v;
}

std::array<float, 256> build_dynamic_map() {
  constexpr int max_exponent_bits = 7, non_sign_bits = 7;
  std::vector<float> data;
  for (int i = 0; i < max_exponent_bits; ++i) {
    // Signed map: 2^(i + non_sign_bits - max_exponent_bits) + 1 boundaries per
    // decade, their midpoints scaled by 10^(i - 6), both signs.
    const int64_t fraction_items = (int64_t{1} << (i + non_sign_bits - max_exponent_bits)) + 1;
    std::vector<float> b = linspace_f32(0.1f, 1.0f, fraction_items);
    const float decade = static_cast<float>(std::pow(10.0, -(max_exponent_bits - 1) + i));
    for (size_t k = 0; k + 1 < b.size(); ++k) {
      const float mean = (b[k] + b[k + 1]) / 2.0f;
      data.push_back(decade * mean);
      data.push_back(-decade * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  GPT2Q_CHECK(data.size() == 256, "dynamic map has {} entries", data.size());
  std::sort(data.begin(), data.end());
  std::array<float, 256> map{};
  std::copy(data.begin(), data.end(), map.begin());
  return map;
}

// Midpoints between neighbouring map entries, as the CUDA kernel computes them.
const std::array<float, 255>& dynamic_midpoints() {
  static const std::array<float, 255> mids = [] {
    const auto& m = dynamic_map_signed();
    std::array<float, 255> r{};
    for (int k = 0; k < 255; ++k) r[k] = (m[k] + m[k + 1]) * 0.5f;
    return r;
  }();
  return mids;
}

}  // namespace

const std::array<float, 256>& dynamic_map_signed() {
  static const std::array<float, 256> map = build_dynamic_map();
  return map;
}

uint8_t quantize_dynamic(float v) {
  if (std::isnan(v)) return 0;  // every comparison in the kernel's search fails
  const auto& mids = dynamic_midpoints();
  // k = number of midpoints strictly below v: nearest entry, ties to the lower.
  int k = static_cast<int>(std::lower_bound(mids.begin(), mids.end(), v) - mids.begin());
  // The kernel's binary search ends on an even pivot and keeps it on a tie.
  if (k < 255 && v == mids[k] && (k % 2) == 1) ++k;
  return static_cast<uint8_t>(k);
}

size_t DoubleQuantAbsmax::bytes() const { return q.size() + state2.size() * sizeof(float) + sizeof(float); }

float DoubleQuantAbsmax::absmax(int64_t i) const {
  return dynamic_map_signed()[q[i]] * state2[i / blocksize] + offset;
}

DoubleQuantAbsmax double_quantize(const float* absmax, int64_t n, int64_t blocksize) {
  GPT2Q_CHECK(n > 0, "double_quantize of no values");
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += absmax[i];
  return double_quantize_with_offset(absmax, n, static_cast<float>(sum / static_cast<double>(n)), blocksize);
}

DoubleQuantAbsmax double_quantize_with_offset(const float* absmax, int64_t n, float offset, int64_t blocksize) {
  GPT2Q_CHECK(n > 0 && blocksize > 0, "double_quantize: n {} blocksize {}", n, blocksize);
  DoubleQuantAbsmax d;
  d.n = n;
  d.blocksize = blocksize;
  d.offset = offset;
  d.q.resize(static_cast<size_t>(n));
  for (int64_t b0 = 0; b0 < n; b0 += blocksize) {
    const int64_t b1 = std::min(n, b0 + blocksize);
    float m = 0.0f;
    for (int64_t i = b0; i < b1; ++i) m = std::max(m, std::fabs(absmax[i] - offset));
    d.state2.push_back(m);
    const float inv = 1.0f / m;  // m == 0 gives inf and NaN codes -> 0, as on CUDA
    for (int64_t i = b0; i < b1; ++i) d.q[i] = quantize_dynamic((absmax[i] - offset) * inv);
  }
  return d;
}

void double_dequantize(const DoubleQuantAbsmax& d, float* absmax) {
  for (int64_t i = 0; i < d.n; ++i) absmax[i] = d.absmax(i);
}

}  // namespace gpt2q::quant
