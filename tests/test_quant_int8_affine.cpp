// int8 "from scratch" against the definition evaluated with torch ops
// (tools/make_quant_fixtures.py, int8_affine.safetensors) and against an
// independent scalar implementation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "quant/int8_affine.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;

namespace {

const SafetensorsFile& fixture() {
  static const SafetensorsFile f = SafetensorsFile::open(test::fixtures_dir() / "quant" / "int8_affine.safetensors");
  return f;
}

template <typename T>
std::vector<T> values(const std::string& key) {
  const Tensor& t = fixture().tensors.at(key);
  EXPECT_EQ(t.dtype(), dtype_of<T>()) << key;
  std::vector<T> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.raw(), t.nbytes());
  return v;
}

Shape shape_of(const std::string& key) { return fixture().tensors.at(key).shape(); }

struct Variant {
  Int8Scheme scheme;
  Int8Granularity granularity;
  const char* tag;
};
const Variant kVariants[] = {{Int8Scheme::affine, Int8Granularity::per_tensor, "affine.tensor"},
                             {Int8Scheme::affine, Int8Granularity::per_channel, "affine.channel"},
                             {Int8Scheme::symmetric, Int8Granularity::per_tensor, "sym.tensor"},
                             {Int8Scheme::symmetric, Int8Granularity::per_channel, "sym.channel"}};

// The definition once more, written independently: fp32 throughout, ties to even.
void independent_quantize(const float* w, int64_t n, bool symmetric, std::vector<int8_t>& q, float& scale,
                          int32_t& zp) {
  auto [lo_it, hi_it] = std::minmax_element(w, w + n);
  float lo = *lo_it, hi = *hi_it;
  if (symmetric) {
    float a = std::max(-lo, hi);
    scale = a > 0 ? a / 127.0f : 1.0f;
    zp = 0;
  } else {
    if (lo == hi) {
      lo = lo < 0 ? lo : 0.0f;
      hi = hi > 0 ? hi : 0.0f;
    }
    scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    zp = static_cast<int32_t>(std::nearbyint(-128.0f - lo / scale));
  }
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(w[i] / scale + static_cast<float>(zp));
    q.push_back(static_cast<int8_t>(v < -128 ? -128 : v > 127 ? 127 : v));
  }
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

}  // namespace

TEST(Int8Affine, MatchesTorchEvaluationOfTheDefinition) {
  const auto meta = nlohmann::json::parse(fixture().metadata.at("cases"));
  for (const std::string c : meta["int8_affine"]["cases"]) {
    std::vector<float> w = values<float>(c + ".input");
    Shape shape = shape_of(c + ".input");
    for (const Variant& v : kVariants) {
      const std::string key = c + "." + v.tag;
      SCOPED_TRACE(key);
      Int8Weight q = quantize_int8(w.data(), shape[0], shape[1], v.scheme, v.granularity);
      EXPECT_EQ(q.q, values<int8_t>(key + ".q"));
      std::vector<float> scale = values<float>(key + ".scale");
      std::vector<int32_t> zp = values<int32_t>(key + ".zero_point");
      ASSERT_EQ(q.scale.size(), scale.size());
      for (size_t g = 0; g < scale.size(); ++g) {
        EXPECT_EQ(bits(q.scale[g]), bits(scale[g])) << g;
        EXPECT_EQ(q.zero_point_of(static_cast<int64_t>(g)), zp[g]) << g;
      }
    }
  }
}

TEST(Int8Affine, MatchesIndependentImplementation) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  const int64_t out = 37, in = 53;
  std::vector<float> w(static_cast<size_t>(out * in));
  for (auto& v : w) v = nd(rng);
  for (int64_t k = 0; k < in; ++k) w[3 * in + k] = 0.5f + 0.001f * static_cast<float>(k);  // range excludes 0
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.tag);
    Int8Weight q = quantize_int8(w.data(), out, in, v.scheme, v.granularity);
    const bool per_channel = v.granularity == Int8Granularity::per_channel;
    std::vector<int8_t> ref;
    for (int64_t g = 0; g < (per_channel ? out : 1); ++g) {
      float scale;
      int32_t zp;
      independent_quantize(w.data() + g * (per_channel ? in : 0), per_channel ? in : out * in,
                           v.scheme == Int8Scheme::symmetric, ref, scale, zp);
      EXPECT_EQ(q.scale_of(g), scale);
      EXPECT_EQ(q.zero_point_of(g), zp);
    }
    EXPECT_EQ(q.q, ref);
    EXPECT_EQ(q.format(), std::string(per_channel ? "int8-channel" : "int8-tensor") +
                              (v.scheme == Int8Scheme::symmetric ? "-sym" : ""));
    // Memory: one byte per weight, an fp32 scale per group, an int32 zero point for affine.
    const size_t groups = per_channel ? out : 1;
    EXPECT_EQ(q.bytes(), static_cast<size_t>(out * in) + 4 * groups + (v.scheme == Int8Scheme::affine ? 4 * groups : 0));
  }
}

TEST(Int8Affine, DequantizationErrorIsAtMostHalfAStep) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-0.3f, 0.7f);
  std::vector<float> w(64 * 48);
  for (auto& v : w) v = u(rng);
  for (const Variant& v : kVariants) {
    Int8Weight q = quantize_int8(w.data(), 64, 48, v.scheme, v.granularity);
    std::vector<float> d(w.size());
    dequantize_int8(q, d.data());
    for (int64_t j = 0; j < 64; ++j)
      for (int64_t k = 0; k < 48; ++k)
        EXPECT_LE(std::fabs(d[j * 48 + k] - w[j * 48 + k]), 0.5001f * q.scale_of(j)) << v.tag << " " << j;
  }
}

TEST(Int8Affine, ConstantAndZeroRangesStayExact) {
  std::vector<float> c(12, -0.75f), z(6, 0.0f);
  for (const Variant& v : kVariants) {
    Int8Weight qc = quantize_int8(c.data(), 3, 4, v.scheme, v.granularity);
    std::vector<float> d(c.size());
    dequantize_int8(qc, d.data());
    for (float x : d) EXPECT_NEAR(x, -0.75f, 1e-6f) << v.tag;
    Int8Weight qz = quantize_int8(z.data(), 2, 3, v.scheme, v.granularity);
    dequantize_int8(qz, d.data());
    for (int i = 0; i < 6; ++i) EXPECT_EQ(d[i], 0.0f) << v.tag;
  }
}

