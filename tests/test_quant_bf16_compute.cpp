// compute dtype bf16 for int8-tensor and nf4 / fp4 (quant/dequant_gemm.h):
// against independent double-precision references of the definition, on the
// AVX512_BF16 kernel and on the portable path, and through the checkpoint's
// quantization_config.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "backend/cpu/gemm_bf16.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/blockwise4.h"
#include "backend/cpu/dequant_gemm.h"
#include "quant/int8_affine.h"
#include "quant/quant_config.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;
using cpu::kTiledGemmMinRows;

namespace {

std::vector<float> normal(int64_t n, float sd, uint32_t seed) { return test::normal_values(n, sd, seed); }

double bf(float v) { return static_cast<double>(bf16_to_float(float_to_bf16(v))); }

// The native kernel where the CPU has one, and always the portable path.
std::vector<bool> paths() {
  cpu::set_bf16_gemm_emulation(false);
  if (cpu::has_native_bf16_gemm()) return {false, true};
  return {true};
}

struct Emulation {
  explicit Emulation(bool on) { cpu::set_bf16_gemm_emulation(on); }
  ~Emulation() { cpu::set_bf16_gemm_emulation(false); }
};

// |y - ref| within fp32 summation error of Σ|terms| (times the column scale).
void expect_close(const std::vector<float>& y, const std::vector<double>& ref, const std::vector<double>& mag,
                  int64_t in) {
  ASSERT_EQ(y.size(), ref.size());
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_LE(std::fabs(y[i] - ref[i]), (in + 4) * std::ldexp(1.0, -24) * mag[i] + 1e-30) << i;
}

const std::vector<std::tuple<int64_t, int64_t, int64_t>> kShapes = {
    {kTiledGemmMinRows, 40, 64}, {17, 33, 77}, {37, 300, 768}, {20, 7, 256}};

}  // namespace

TEST(Bf16Compute, Int8TimesExactIntegerCodesThenScale) {
  for (auto [rows, out, in] : kShapes)
    for (Int8Scheme scheme : {Int8Scheme::affine, Int8Scheme::symmetric})
      for (Int8Granularity gran : {Int8Granularity::per_tensor, Int8Granularity::per_channel}) {
      for (bool all_positive : {false, true}) {
        std::vector<float> w = normal(out * in, 0.02f, 1);
        // Row 0 excludes 0 (a zero point far outside [-128, 128] per
        // channel); all_positive does that for the whole tensor.
        for (int64_t k = 0; k < in; ++k) w[k] = 0.3f + 0.01f * static_cast<float>(k % 7);
        if (all_positive)
          for (auto& v : w) v = 0.25f + std::fabs(v);
        const std::vector<float> x = normal(rows * in, 1.0f, 2), b = normal(out, 0.1f, 3);
        const Int8Weight q = quantize_int8(w.data(), out, in, scheme, gran);
        std::vector<double> ref(static_cast<size_t>(rows * out)), mag(ref.size());
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < out; ++j) {
            double s = 0, m = 0;
            for (int64_t k = 0; k < in; ++k) {
              const double xk = bf(x[i * in + k]);
              s += xk * (q.q[j * in + k] - q.zero_point_of(j));
              // x·q - zp·Σx when the zero point does not fit bf16 exactly
              m += std::fabs(xk) * (std::abs(q.q[j * in + k]) + std::abs(q.zero_point_of(j)));
            }
            ref[i * out + j] = s * q.scale_of(j) + b[j];
            mag[i * out + j] = m * q.scale_of(j) + std::fabs(b[j]);
          }
        for (bool emulated : paths()) {
          Emulation e(emulated);
          SCOPED_TRACE(q.format() + (emulated ? " emulated" : " native") + " in=" + std::to_string(in));
          std::vector<float> y(ref.size(), NAN);
          int8_matmul(q, b.data(), x.data(), rows, y.data(), best_isa(), DType::BF16);
          expect_close(y, ref, mag, in);
        }
      }
      }
}

TEST(Bf16Compute, Blockwise4RoundsActivationsAndDequantizedWeights) {
  for (auto [rows, out, in] : kShapes)
    for (Code4 type : {Code4::nf4, Code4::fp4})
      for (bool dq : {false, true}) {
        const std::vector<float> w = normal(out * in, 0.02f, 4), x = normal(rows * in, 1.0f, 5), b = normal(out, 0.1f, 6);
        const Blockwise4Weight q = quantize_4bit(w.data(), out, in, {type, 32, dq});
        std::vector<float> wd(w.size());
        dequantize_4bit(q, wd.data());
        std::vector<double> ref(static_cast<size_t>(rows * out)), mag(ref.size());
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < out; ++j) {
            double s = b[j], m = std::fabs(b[j]);
            for (int64_t k = 0; k < in; ++k) {
              const double t = bf(x[i * in + k]) * bf(wd[j * in + k]);
              s += t;
              m += std::fabs(t);
            }
            ref[i * out + j] = s;
            mag[i * out + j] = m;
          }
        for (bool emulated : paths()) {
          Emulation e(emulated);
          SCOPED_TRACE(q.format() + (emulated ? " emulated" : " native") + " in=" + std::to_string(in));
          std::vector<float> y(ref.size(), NAN);
          blockwise4_matmul(q, b.data(), x.data(), rows, y.data(), best_isa(), DType::BF16);
          expect_close(y, ref, mag, in);
        }
      }
}

TEST(Bf16Compute, QuantizationConfigNamesItAsTorchDoes) {
  QuantizationConfig c;
  c.method = QuantMethod::nf4;
  c.compute_dtype = "bfloat16";
  EXPECT_EQ(c.compute(), DType::BF16);
  const nlohmann::json j = c.to_json();
  EXPECT_EQ(j.at("bnb_4bit_compute_dtype"), "bfloat16");
  EXPECT_EQ(QuantizationConfig::from_json(j, "config.json").compute(), DType::BF16);
  c.compute_dtype = "float16";  // bnb's common choice: computed in fp32 here
  EXPECT_EQ(QuantizationConfig::from_json(c.to_json(), "config.json").compute(), DType::F32);

  QuantizationConfig i8;
  i8.method = QuantMethod::int8_tensor;
  i8.compute_dtype = "bfloat16";
  EXPECT_EQ(i8.to_json().at("compute_dtype"), "bfloat16");
  EXPECT_EQ(QuantizationConfig::from_json(i8.to_json(), "config.json").compute(), DType::BF16);
  EXPECT_NE(i8.describe().find("bf16 compute"), std::string::npos);

  nlohmann::json bad = c.to_json();
  bad["bnb_4bit_compute_dtype"] = "int4";
  try {
    QuantizationConfig::from_json(bad, "m/config.json");
    FAIL() << "accepted compute dtype int4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m/config.json: quantization_config.bnb_4bit_compute_dtype \"int4\""),
              std::string::npos)
        << e.what();
  }
  nlohmann::json bad8 = i8.to_json();
  bad8["compute_dtype"] = "float16";  // not offered for int8-tensor
  EXPECT_THROW(QuantizationConfig::from_json(bad8, "config.json"), Error);

  EXPECT_EQ(parse_compute_dtype("bf16"), DType::BF16);
  EXPECT_EQ(parse_compute_dtype("float32"), DType::F32);
  EXPECT_FALSE(parse_compute_dtype("fp16").has_value());
}
