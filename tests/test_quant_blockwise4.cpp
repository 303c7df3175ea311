// NF4 / FP4 against bitsandbytes' CUDA kernel (fixtures from
// tools/make_quant_fixtures.py --device cuda) and against an independent
// scalar implementation written here from the kernel's decimal thresholds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "quant/blockwise4.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;

namespace {

const SafetensorsFile& fixture() {
  static const SafetensorsFile f =
      SafetensorsFile::open(test::fixtures_dir() / "quant" / "blockwise4_cuda.safetensors");
  return f;
}

// Copies (safetensors offsets need not be aligned for T).
template <typename T>
std::vector<T> values(const std::string& key) {
  const Tensor& t = fixture().tensors.at(key);
  EXPECT_EQ(t.dtype(), dtype_of<T>()) << key;
  std::vector<T> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.raw(), t.nbytes());
  return v;
}

struct Case {
  std::string name;
  int64_t out, in, blocksize;
};

std::vector<Case> cases() {
  auto meta = nlohmann::json::parse(fixture().metadata.at("cases"));
  std::vector<Case> r;
  for (auto& [name, c] : meta.items())
    r.push_back({name, c["shape"][0].get<int64_t>(), c["shape"][1].get<int64_t>(), c["blocksize"].get<int64_t>()});
  return r;
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// --- independent implementation, from the kernel source text -------------

// dQuantizeNF4 / dQuantizeFP4 compare against these decimal literals; strtof
// rounds each one correctly to fp32, as nvcc does.
const char* kNf4Literals[15] = {"-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906",
                                "-0.33967943489551544", "-0.23460740596055984", "-0.13791173323988914",
                                "-0.045525018125772476", "0.03979014977812767", "0.1202552504837513",
                                "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
                                "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"};
const char* kFp4Literals[7] = {"0.00260417", "0.0859375", "0.20833333", "0.29166667",
                               "0.4166667", "0.583333", "0.8333333"};

uint8_t independent_nf4(float s) {
  // Walk down from the top code: the first threshold below s decides.
  for (int t = 14; t >= 0; --t)
    if (s > std::strtof(kNf4Literals[t], nullptr)) return static_cast<uint8_t>(t + 1);
  return 0;
}

uint8_t independent_fp4(float s) {
  // Magnitudes in increasing order are 0, 0.0625, 2, 3, 4, 6, 8, 12 (/12);
  // their codes (sign bit clear) in that order:
  static const uint8_t code_of_rank[8] = {0, 1, 6, 7, 4, 5, 2, 3};
  float a = std::fabs(s);
  int rank = 0;
  while (rank < 7 && a > std::strtof(kFp4Literals[rank], nullptr)) ++rank;
  return static_cast<uint8_t>(code_of_rank[rank] + (s < 0 ? 8 : 0));
}

std::vector<uint8_t> independent_quantize(const std::vector<float>& w, int64_t bs, Code4 type,
                                          std::vector<float>& absmax) {
  const int64_t n = static_cast<int64_t>(w.size());
  std::vector<uint8_t> codes;
  absmax.clear();
  float inv = 0;
  for (int64_t b0 = 0; b0 < n; b0 += bs) {
    float m = 0;
    for (int64_t i = b0; i < std::min(n, b0 + bs); ++i) m = std::max(m, std::fabs(w[i]));
    absmax.push_back(m);
    inv = 1.0f / m;
    for (int64_t i = b0; i < std::min(n, b0 + bs); ++i)
      codes.push_back(type == Code4::nf4 ? independent_nf4(w[i] * inv) : independent_fp4(w[i] * inv));
  }
  if (n % 2) codes.push_back(type == Code4::nf4 ? independent_nf4(0.0f * inv) : independent_fp4(0.0f * inv));
  std::vector<uint8_t> packed;
  for (size_t i = 0; i < codes.size(); i += 2) packed.push_back(static_cast<uint8_t>(codes[i] << 4 | codes[i + 1]));
  return packed;
}

}  // namespace

TEST(Blockwise4, TablesMatchBitsandbytes) {
  // get_4bit_type("nf4") values (REFERENCE.md) and get_4bit_type("fp4") = [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12.
  const double nf4[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                          -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                          0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                          0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0};
  const double fp4_over_12[8] = {0, 0.0625, 8, 12, 4, 6, 2, 3};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(code4_table(Code4::nf4)[c], static_cast<float>(nf4[c])) << c;
    float fp4 = static_cast<float>(fp4_over_12[c & 7] / 12.0);
    EXPECT_EQ(code4_table(Code4::fp4)[c], (c & 8) ? -fp4 : fp4) << c;
  }
  EXPECT_TRUE(std::signbit(code4_table(Code4::fp4)[8]));  // -0.0, as the CUDA LUT times -1 gives
}

TEST(Blockwise4, EveryTableValueQuantizesToItsOwnCode) {
  for (int c = 0; c < 16; ++c) EXPECT_EQ(quantize_nf4(code4_table(Code4::nf4)[c]), c);
  for (int c = 0; c < 16; ++c) {
    // -0.0 is not < 0, so it takes code 0 like +0.0.
    int expect = c == 8 ? 0 : c;
    EXPECT_EQ(quantize_fp4(code4_table(Code4::fp4)[c]), expect) << c;
  }
}

TEST(Blockwise4, CodesMatchIndependentImplementationNearEveryThreshold) {
  std::vector<float> probes = {0.0f, -0.0f, 1.0f, -1.0f, 1e-30f, -1e-30f, NAN, INFINITY, -INFINITY};
  // Each threshold and the two floats on either side of it.
  auto around = [&](const char* lit, bool both_signs) {
    float v = std::nextafter(std::nextafter(std::strtof(lit, nullptr), -2.0f), -2.0f);
    for (int k = 0; k < 5; ++k, v = std::nextafter(v, 2.0f)) {
      probes.push_back(v);
      if (both_signs) probes.push_back(-v);
    }
  };
  for (const char* lit : kNf4Literals) around(lit, false);
  for (const char* lit : kFp4Literals) around(lit, true);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 20000; ++i) probes.push_back(u(rng));
  for (float v : probes) {
    EXPECT_EQ(quantize_nf4(v), independent_nf4(v)) << v;
    EXPECT_EQ(quantize_fp4(v), independent_fp4(v)) << v;
  }
  EXPECT_EQ(quantize_nf4(NAN), 0);  // all-zero blocks: 0 · (1/0) is NaN
  EXPECT_EQ(quantize_fp4(NAN), 0);
}

TEST(Blockwise4, PackedCodesAndAbsmaxBitIdenticalToBitsandbytesCuda) {
  for (const Case& c : cases()) {
    const std::vector<float> w = values<float>(c.name + ".input");
    for (Code4 type : {Code4::nf4, Code4::fp4}) {
      const std::string key = c.name + "." + code4_name(type);
      SCOPED_TRACE(key);
      Blockwise4Weight q = quantize_4bit(w.data(), c.out, c.in, {type, c.blocksize, false});
      EXPECT_EQ(q.packed, values<uint8_t>(key + ".packed"));
      std::vector<float> am = values<float>(key + ".absmax");
      ASSERT_EQ(q.absmax.size(), am.size());
      for (size_t b = 0; b < am.size(); ++b) EXPECT_EQ(bits(q.absmax[b]), bits(am[b])) << b;

      std::vector<float> ind_absmax;
      EXPECT_EQ(q.packed, independent_quantize(w, c.blocksize, type, ind_absmax));
      EXPECT_EQ(q.absmax, ind_absmax);
      EXPECT_EQ(q.bytes(), static_cast<size_t>((c.out * c.in + 1) / 2 + 4 * am.size()));
    }
  }
}

TEST(Blockwise4, DequantizedBitIdenticalToBitsandbytesCuda) {
  for (const Case& c : cases()) {
    const std::string any = c.name + ".nf4.dequant";
    if (!fixture().tensors.count(any)) continue;  // large cases store codes only
    const std::vector<float> w = values<float>(c.name + ".input");
    for (Code4 type : {Code4::nf4, Code4::fp4}) {
      const std::string key = c.name + "." + code4_name(type);
      SCOPED_TRACE(key);
      Blockwise4Weight q = quantize_4bit(w.data(), c.out, c.in, {type, c.blocksize, false});
      std::vector<float> d(static_cast<size_t>(q.numel()));
      dequantize_4bit(q, d.data());
      std::vector<float> ref = values<float>(key + ".dequant");
      ASSERT_EQ(d.size(), ref.size());
      for (size_t i = 0; i < d.size(); ++i) ASSERT_EQ(bits(d[i]), bits(ref[i])) << i;
    }
  }
}

TEST(Blockwise4, DesignedEdgeCasesBehaveAsDocumented) {
  // Exactly on the fp32 midpoint between codes 8 and 9: code 8, but the
  // kernel's literal for that threshold is one ulp above the midpoint, so the
  // next float up still gets 8 (bnb's CPU backend gives 9 there).
  const float mid89 = (code4_table(Code4::nf4)[8] + code4_table(Code4::nf4)[9]) / 2;
  EXPECT_EQ(quantize_nf4(mid89), 8);
  EXPECT_EQ(quantize_nf4(std::nextafter(mid89, 2.0f)), 8);
  EXPECT_EQ(quantize_nf4(std::nextafter(std::nextafter(mid89, 2.0f), 2.0f)), 9);

  // All-zero block -> code 0 (NaN path) and absmax 0; dequantizes to -0.0.
  std::vector<float> w(64 + 3, 0.0f);
  w[64] = 0.5f;  // a 3-element final block
  Blockwise4Weight q = quantize_4bit(w.data(), 1, 67, {Code4::nf4, 64, false});
  EXPECT_EQ(q.absmax, (std::vector<float>{0.0f, 0.5f}));
  for (int i = 0; i < 64; ++i) EXPECT_EQ(q.code(i), 0);
  EXPECT_EQ(q.code(64), 15);
  EXPECT_EQ(q.code(65), 7);
  EXPECT_EQ(q.code(66), 7);
  EXPECT_EQ(q.code(67), 7);  // padding nibble: the code of 0
  EXPECT_EQ(q.packed.size(), 34u);
}

TEST(Blockwise4, BadInputIsAnError) {
  std::vector<float> w(128, 0.1f);
  EXPECT_THROW(quantize_4bit(w.data(), 2, 64, {Code4::nf4, 48, false}), Error);
  EXPECT_THROW(quantize_4bit(w.data(), 2, 64, {Code4::nf4, 8192, false}), Error);
  w[5] = NAN;
  EXPECT_THROW(quantize_4bit(w.data(), 2, 64, {Code4::nf4, 64, false}), Error);
}

TEST(Blockwise4, BytesForGpt2Shapes) {
  // c_fc of GPT-2 124M: [3072, 768] after the transpose; 2,359,296 weights.
  std::vector<float> w(3072 * 768, 0.01f);
  Blockwise4Weight q = quantize_4bit(w.data(), 3072, 768, {Code4::nf4, 64, false});
  EXPECT_EQ(q.bytes(), 2359296u / 2 + 4u * 36864u);
  Blockwise4Weight dq = quantize_4bit(w.data(), 3072, 768, {Code4::nf4, 64, true});
  // codes + one byte per block + one fp32 per 256 blocks + the offset
  EXPECT_EQ(dq.bytes(), 2359296u / 2 + 36864u + 4u * 144u + 4u);
  EXPECT_EQ(dq.format(), "nf4-dq");
}
