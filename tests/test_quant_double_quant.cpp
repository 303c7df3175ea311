// Double quantization of the 4-bit absmax: the dynamic map and the nested
// 8-bit codes against bitsandbytes (CUDA fixtures) and a brute-force search.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "quant/blockwise4.h"
#include "quant/double_quant.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;

namespace {

const SafetensorsFile& open_fixture(const std::string& name) {
  static std::map<std::string, SafetensorsFile> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, SafetensorsFile::open(test::fixtures_dir() / "quant" / name)).first;
  return it->second;
}

template <typename T>
std::vector<T> values(const std::string& file, const std::string& key) {
  const Tensor& t = open_fixture(file).tensors.at(key);
  EXPECT_EQ(t.dtype(), dtype_of<T>()) << key;
  std::vector<T> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.raw(), t.nbytes());
  return v;
}

const char* kBw4 = "blockwise4_cuda.safetensors";

std::vector<std::string> case_names() {
  std::vector<std::string> r;
  const auto meta = nlohmann::json::parse(open_fixture(kBw4).metadata.at("cases"));
  for (auto& [name, c] : meta.items()) r.push_back(name);
  return r;
}

// Nearest map entry by exhaustive search; exactly between two: the even index.
uint8_t brute_force_dynamic(float v) {
  const auto& m = dynamic_map_signed();
  int best = 0;
  for (int k = 1; k < 256; ++k) {
    float mid = (m[k - 1] + m[k]) * 0.5f;
    if (v > mid || (v == mid && k % 2 == 0)) best = k;
  }
  return static_cast<uint8_t>(best);
}

}  // namespace

TEST(DoubleQuant, DynamicMapBitIdenticalToCreateDynamicMap) {
  std::vector<float> ref = values<float>("dynamic_map.safetensors", "map");
  ASSERT_EQ(ref.size(), 256u);
  for (int k = 0; k < 256; ++k) EXPECT_EQ(dynamic_map_signed()[k], ref[k]) << k;
}

TEST(DoubleQuant, QuantizeDynamicIsNearestWithTiesToEven) {
  const auto& m = dynamic_map_signed();
  std::vector<float> probes = {0.0f, -0.0f, 1.0f, -1.0f, 1.5f, -1.5f};
  for (int k = 1; k < 256; ++k) {
    float mid = (m[k - 1] + m[k]) * 0.5f;
    probes.insert(probes.end(), {mid, std::nextafter(mid, 2.0f), std::nextafter(mid, -2.0f), m[k]});
  }
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 20000; ++i) probes.push_back(u(rng));
  for (float v : probes) EXPECT_EQ(quantize_dynamic(v), brute_force_dynamic(v)) << v;
  EXPECT_EQ(quantize_dynamic(NAN), 0);
}

TEST(DoubleQuant, BitIdenticalToBitsandbytesGivenItsOffset) {
  for (const std::string& name : case_names()) {
    for (const char* type : {"nf4", "fp4"}) {
      const std::string key = name + "." + type;
      SCOPED_TRACE(key);
      std::vector<float> absmax = values<float>(kBw4, key + ".absmax");
      const float offset = values<float>(kBw4, key + ".dq.offset").at(0);
      DoubleQuantAbsmax d = double_quantize_with_offset(absmax.data(), static_cast<int64_t>(absmax.size()), offset);
      EXPECT_EQ(d.q, values<uint8_t>(kBw4, key + ".dq.qabsmax"));
      EXPECT_EQ(d.state2, values<float>(kBw4, key + ".dq.state2"));
      std::vector<float> back(absmax.size());
      double_dequantize(d, back.data());
      EXPECT_EQ(back, values<float>(kBw4, key + ".dq.absmax"));
    }
  }
}

TEST(DoubleQuant, OwnOffsetStaysWithinBitsandbytesError) {
  // Our offset is the correctly rounded mean; bnb's is torch's fp32 mean,
  // whose reduction order differs by device. Both must agree to an ulp, and
  // our dequantized absmax must be as close to the true one as the 8-bit
  // code allows: half the gap to the neighbouring map entry, times state2.
  const auto& m = dynamic_map_signed();
  for (const std::string& name : case_names()) {
    const std::string key = name + ".nf4";
    SCOPED_TRACE(key);
    std::vector<float> absmax = values<float>(kBw4, key + ".absmax");
    const float bnb_offset = values<float>(kBw4, key + ".dq.offset").at(0);
    DoubleQuantAbsmax d = double_quantize(absmax.data(), static_cast<int64_t>(absmax.size()));
    EXPECT_LE(std::fabs(d.offset - bnb_offset), std::fabs(std::nextafter(bnb_offset, 1e30f) - bnb_offset));
    std::vector<float> bnb = values<float>(kBw4, key + ".dq.absmax");
    size_t close = 0;
    for (size_t i = 0; i < absmax.size(); ++i) {
      const int q = d.q[i];
      const float gap = std::max(q > 0 ? m[q] - m[q - 1] : 0.0f, q < 255 ? m[q + 1] - m[q] : 0.0f);
      const float bound = 0.5f * gap * d.state2[i / 256] + 4e-7f * std::fabs(absmax[i]) + 1e-30f;
      const float ours = d.absmax(static_cast<int64_t>(i));
      EXPECT_LE(std::fabs(ours - absmax[i]), bound) << i;
      // Same code as bnb: the values differ only by the offset's ulp.
      close += std::fabs(ours - bnb[i]) <= 4.8e-7f * std::max(std::fabs(bnb[i]), std::fabs(d.offset));
    }
    EXPECT_GE(close * 10, absmax.size() * 9);  // an ulp of offset flips few codes
  }
}

TEST(DoubleQuant, Blockwise4WithDoubleQuantUsesNestedAbsmax) {
  const std::string name = "nested";  // 600 blocks: nested blocks of 256, 256, 88
  std::vector<float> w = values<float>(kBw4, name + ".input");
  Blockwise4Weight q = quantize_4bit(w.data(), 300, 128, {Code4::nf4, 64, true});
  ASSERT_TRUE(q.nested.has_value());
  EXPECT_TRUE(q.absmax.empty());
  EXPECT_EQ(q.nested->state2.size(), 3u);
  EXPECT_EQ(q.packed, values<uint8_t>(kBw4, name + ".nf4.packed"));  // codes do not depend on it
  std::vector<float> ab = q.block_absmax();
  for (size_t i = 0; i < ab.size(); ++i) EXPECT_EQ(ab[i], q.nested->absmax(static_cast<int64_t>(i)));
}
