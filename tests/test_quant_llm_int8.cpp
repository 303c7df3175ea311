// LLM.int8() against bitsandbytes (Linear8bitLt and its ops, fixtures from
// tools/make_quant_fixtures.py on CUDA and on the CPU backend) and against an
// independent scalar implementation of the activation quantization.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "core/half.h"
#include "io/safetensors.h"
#include "backend/cpu/quant_int8_kernels.h"
#include "quant/llm_int8.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;
using cpu::available_isas;
using cpu::Int8Gemm;
using cpu::int8_gemm_i32;
using cpu::isa_name;

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

const std::vector<std::string> kFiles = {"llm_int8_cuda.safetensors", "llm_int8_cpu.safetensors"};
const char* kCuda = "llm_int8_cuda.safetensors";
const char* kCpu = "llm_int8_cpu.safetensors";

struct FixtureSetup {
  int64_t out, in;
  std::vector<std::string> cases;
};

FixtureSetup setup(const std::string& file) {
  const auto meta = nlohmann::json::parse(open_fixture(file).metadata.at("cases"))["llm_int8"];
  return {meta["out"].get<int64_t>(), meta["in"].get<int64_t>(), meta["cases"].get<std::vector<std::string>>()};
}

std::string tag(const std::string& c, int t) { return c + ".t" + std::to_string(t); }

LlmInt8Weight fixture_weight(const std::string& file) {
  FixtureSetup s = setup(file);
  std::vector<float> w = values<float>(file, "weight");
  return quantize_llm_int8(w.data(), s.out, s.in);
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// bnb's int8_vectorwise_quant written out again from its definition.
void independent_quantize_rows(const std::vector<float>& x, int64_t rows, int64_t cols, float thr,
                               std::vector<int8_t>& q, std::vector<float>& absmax, std::vector<int32_t>& outliers) {
  std::vector<float> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = half_to_float(float_to_half(x[i]));
  outliers.clear();
  for (int64_t k = 0; k < cols; ++k) {
    bool any = false;
    for (int64_t i = 0; i < rows; ++i) any = any || (thr > 0 && std::fabs(h[i * cols + k]) >= thr);
    if (any) outliers.push_back(static_cast<int32_t>(k));
  }
  q.assign(x.size(), 0);
  absmax.assign(static_cast<size_t>(rows), 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < cols; ++k) {
      float a = std::fabs(h[i * cols + k]);
      if (!(thr > 0 && a >= thr) && a > absmax[i]) absmax[i] = a;
    }
    for (int64_t k = 0; k < cols; ++k) {
      bool is_outlier_col = std::find(outliers.begin(), outliers.end(), k) != outliers.end();
      float v = std::nearbyint(h[i * cols + k] * (127.0f / absmax[i]));
      q[i * cols + k] = (is_outlier_col || std::isnan(v)) ? 0 : static_cast<int8_t>(v);
    }
  }
}

}  // namespace

TEST(LlmInt8, WeightCodesMatchBitsandbytes) {
  for (const auto& file : kFiles) {
    SCOPED_TRACE(file);
    LlmInt8Weight w = fixture_weight(file);
    EXPECT_EQ(w.cb, values<int8_t>(file, "CB"));
    EXPECT_EQ(w.scb, values<float>(file, "SCB"));
    EXPECT_EQ(w.bytes(), static_cast<size_t>(w.out * w.in + 4 * w.out + 4 * w.out));
  }
}

TEST(LlmInt8, ActivationCodesAndOutlierColumnsMatchBitsandbytes) {
  for (const auto& file : kFiles) {
    FixtureSetup s = setup(file);
    for (const auto& c : s.cases)
      for (int t : {0, 6}) {
        SCOPED_TRACE(file + " " + tag(c, t));
        std::vector<float> x = values<float>(file, c + ".x");
        const int64_t rows = static_cast<int64_t>(x.size()) / s.in;
        Int8Rows a = quantize_rows_int8(x.data(), rows, s.in, static_cast<float>(t));
        EXPECT_EQ(a.q, values<int8_t>(file, tag(c, t) + ".CA"));
        EXPECT_EQ(a.absmax, values<float>(file, tag(c, t) + ".SCA"));
        std::vector<uint8_t> mask(static_cast<size_t>(s.in), 0);
        for (int32_t k : a.outlier_cols) mask[k] = 1;
        EXPECT_EQ(mask, values<uint8_t>(file, tag(c, t) + ".outlier_mask"));

        std::vector<int8_t> q;
        std::vector<float> absmax;
        std::vector<int32_t> outliers;
        independent_quantize_rows(x, rows, s.in, static_cast<float>(t), q, absmax, outliers);
        EXPECT_EQ(a.q, q);
        EXPECT_EQ(a.absmax, absmax);
        EXPECT_EQ(a.outlier_cols, outliers);
      }
  }
}

TEST(LlmInt8, ThresholdComparesTheFp16ValueWithGreaterOrEqual) {
  std::vector<float> x(2 * 8, 0.5f);
  x[1] = 6.0f;    // exactly the threshold: outlier
  x[2] = 5.999f;  // fp16 rounds it to 6.0: outlier
  x[3] = 5.99f;   // fp16 5.98828125: not an outlier
  x[8 + 4] = -6.0f;
  Int8Rows a = quantize_rows_int8(x.data(), 2, 8, 6.0f);
  EXPECT_EQ(a.outlier_cols, (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(a.absmax[0], 5.98828125f);  // outliers leave the absmax, the rest of their columns stay
  for (int32_t k : a.outlier_cols) EXPECT_EQ(a.q[k], 0);
  EXPECT_EQ(a.q[3], 127);
  Int8Rows off = quantize_rows_int8(x.data(), 2, 8, 0.0f);
  EXPECT_TRUE(off.outlier_cols.empty());
  EXPECT_EQ(off.absmax[0], 6.0f);
}

TEST(LlmInt8, Int32ProductsExactOnEveryIsa) {
  for (const auto& file : kFiles) {
    FixtureSetup s = setup(file);
    LlmInt8Weight w = fixture_weight(file);
    for (const auto& c : s.cases)
      for (int t : {0, 6}) {
        std::vector<int8_t> ca = values<int8_t>(file, tag(c, t) + ".CA");
        const int64_t rows = static_cast<int64_t>(ca.size()) / s.in;
        for (Isa isa : available_isas()) {
          SCOPED_TRACE(file + " " + tag(c, t) + " " + isa_name(isa));
          std::vector<int32_t> acc(static_cast<size_t>(rows * s.out));
          int8_gemm_i32({ca.data(), rows, w.cb.data(), w.cb_row_sums.data(), s.in, s.out, acc.data()}, isa);
          EXPECT_EQ(acc, values<int32_t>(file, tag(c, t) + ".acc"));
        }
      }
  }
}

TEST(LlmInt8, CudaEpilogueBitIdenticalToBitsandbytesKernel) {
  FixtureSetup s = setup(kCuda);
  LlmInt8Weight w = fixture_weight(kCuda);
  for (const auto& c : s.cases)
    for (int t : {0, 6}) {
      SCOPED_TRACE(tag(c, t));
      std::vector<int32_t> acc = values<int32_t>(kCuda, tag(c, t) + ".acc");
      std::vector<float> sca = values<float>(kCuda, tag(c, t) + ".SCA");
      const int64_t rows = static_cast<int64_t>(sca.size());
      std::vector<float> y(static_cast<size_t>(rows * s.out));
      llm_int8_epilogue(acc.data(), sca.data(), w, nullptr, rows, LlmInt8Epilogue::cuda_fp16, y.data());
      std::vector<uint16_t> ref = values<uint16_t>(kCuda, tag(c, t) + ".int8_part_f16");
      for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(bits(y[i]), bits(half_to_float(ref[i]))) << i;
    }
}

TEST(LlmInt8, OutputsMatchLinear8bitLtOnCuda) {
  // An fp32 Linear8bitLt on CUDA: int8 part in fp16, bias added in fp16, the
  // outlier columns in fp32. Bit-identical without outliers; with them only
  // the fp32 summation order of the outlier columns may differ.
  FixtureSetup s = setup(kCuda);
  LlmInt8Weight w = fixture_weight(kCuda);
  std::vector<float> bias = values<float>(kCuda, "bias");
  for (const auto& c : s.cases)
    for (int t : {0, 6}) {
      SCOPED_TRACE(tag(c, t));
      std::vector<float> x = values<float>(kCuda, c + ".x");
      const int64_t rows = static_cast<int64_t>(x.size()) / s.in;
      std::vector<float> y(static_cast<size_t>(rows * s.out));
      llm_int8_matmul(w, bias.data(), x.data(), rows, {static_cast<float>(t), LlmInt8Epilogue::cuda_fp16}, y.data());
      std::vector<float> ref = values<float>(kCuda, tag(c, t) + ".y");
      std::vector<uint8_t> mask = values<uint8_t>(kCuda, tag(c, t) + ".outlier_mask");
      const bool outliers = std::find(mask.begin(), mask.end(), 1) != mask.end();
      for (size_t i = 0; i < y.size(); ++i) {
        if (outliers)
          EXPECT_NEAR(y[i], ref[i], 4e-6f * (1.0f + std::fabs(ref[i]))) << i;
        else
          EXPECT_EQ(bits(y[i]), bits(ref[i])) << i;
      }
    }
}

TEST(LlmInt8, Fp32EpilogueMatchesTheCpuBackendWithinItsConstant) {
  // bnb's CPU backend keeps fp32 but scales by 6.200124e-05 where 1/127² is
  // 6.2000124e-05 (relative difference 1.8e-5); we use CUDA's constant.
  FixtureSetup s = setup(kCpu);
  LlmInt8Weight w = fixture_weight(kCpu);
  std::vector<float> bias = values<float>(kCpu, "bias");
  for (const auto& c : s.cases)
    for (int t : {0, 6}) {
      SCOPED_TRACE(tag(c, t));
      std::vector<float> x = values<float>(kCpu, c + ".x");
      const int64_t rows = static_cast<int64_t>(x.size()) / s.in;
      std::vector<float> y(static_cast<size_t>(rows * s.out));
      llm_int8_matmul(w, bias.data(), x.data(), rows, {static_cast<float>(t), LlmInt8Epilogue::fp32}, y.data());
      std::vector<float> ref = values<float>(kCpu, tag(c, t) + ".y");
      for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 2e-5f * (1.0f + std::fabs(ref[i]))) << i;
    }
}

TEST(LlmInt8, FastPathBitIdenticalToReferenceOnEveryIsa) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // The fast path quantizes activations and runs the epilogue in registers
  // (8 at a time, tails in scalar code) and multiplies with VNNI tiles of
  // 4 rows x 4 weight rows: shapes cover every tail.
  for (auto [rows, out, in] : {std::tuple{1, 7, 5}, {3, 33, 64}, {5, 40, 130}, {9, 70, 257}, {18, 45, 771}}) {
    std::vector<float> w(static_cast<size_t>(out * in)), x(static_cast<size_t>(rows * in)), b(static_cast<size_t>(out));
    for (auto& v : w) v = 0.05f * nd(rng);
    for (auto& v : x) v = nd(rng);
    for (auto& v : b) v = 0.1f * nd(rng);
    x[static_cast<size_t>(in / 2)] = 9.0f;  // an outlier column
    x[1] = 3e-6f;                           // fp16 subnormal
    if (rows > 1) x[static_cast<size_t>(in) + 2] = 5.99999f;  // rounds to 6 in fp16: an outlier at threshold 6
    if (rows > 2) x[static_cast<size_t>(2 * in + 3)] = 1e5f;  // beyond fp16: inf, absmax inf at threshold 0
    LlmInt8Weight q = quantize_llm_int8(w.data(), out, in);
    for (LlmInt8Epilogue ep : {LlmInt8Epilogue::cuda_fp16, LlmInt8Epilogue::fp32})
      for (float thr : {0.0f, 6.0f}) {
        std::vector<float> ref(static_cast<size_t>(rows * out)), fast(ref.size());
        llm_int8_matmul_reference(q, b.data(), x.data(), rows, {thr, ep}, ref.data());
        for (Isa isa : available_isas()) {
          SCOPED_TRACE(std::string(isa_name(isa)) + " in=" + std::to_string(in));
          llm_int8_matmul(q, b.data(), x.data(), rows, {thr, ep}, fast.data(), isa);
          for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(bits(fast[i]), bits(ref[i])) << i;
        }
      }
  }
}

// Many outlier columns, in scattered rows, at a size where the fast path
// spreads activation quantization, the epilogue and the outlier sums over the
// threads (32 x 128 tokens hit this): still the reference's bits.
TEST(LlmInt8, FastPathBitIdenticalWithManyOutlierColumnsOnThreads) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t rows = 96, out = 203, in = 1000;
  std::vector<float> w(static_cast<size_t>(out * in)), x(static_cast<size_t>(rows * in)), b(static_cast<size_t>(out));
  for (auto& v : w) v = 0.05f * nd(rng);
  for (auto& v : x) v = 1.5f * nd(rng);  // a few |x| >= 6 by chance
  for (auto& v : b) v = 0.1f * nd(rng);
  for (int64_t c = 0; c < 23; ++c) x[static_cast<size_t>((c * 37 % rows) * in + c * 41)] = (c % 2 ? -1.0f : 1.0f) * (7.0f + c);
  const LlmInt8Weight q = quantize_llm_int8(w.data(), out, in);
  const Int8Rows codes = quantize_rows_int8(x.data(), rows, in, 6.0f);
  ASSERT_GE(codes.outlier_cols.size(), 23u);
  for (LlmInt8Epilogue ep : {LlmInt8Epilogue::cuda_fp16, LlmInt8Epilogue::fp32}) {
    std::vector<float> ref(static_cast<size_t>(rows * out)), fast(ref.size());
    llm_int8_matmul_reference(q, b.data(), x.data(), rows, {6.0f, ep}, ref.data());
    for (Isa isa : available_isas()) {
      SCOPED_TRACE(isa_name(isa));
      std::fill(fast.begin(), fast.end(), NAN);
      llm_int8_matmul(q, b.data(), x.data(), rows, {6.0f, ep}, fast.data(), isa);
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(bits(fast[i]), bits(ref[i])) << i;
    }
  }
}

