// The fast kernels (AVX2, AVX-512 VNNI, register table lookup) against the
// scalar references: dequantize, then dot products. Every ISA the CPU has.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant/blockwise4.h"
#include "backend/cpu/dequant_gemm.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/quant_int8_kernels.h"
#include "quant/int8_affine.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;
using namespace gpt2q::cpu;

namespace {

std::vector<float> normal(int64_t n, float sd, uint32_t seed) { return test::normal_values(n, sd, seed); }

// y = x · Wᵀ (+ b) in double, and Σ|x||w| per output for the error bound.
void reference_double(const std::vector<float>& wd, const float* bias, const std::vector<float>& x, int64_t rows,
                      int64_t out, int64_t in, std::vector<double>& y, std::vector<double>& mag) {
  y.assign(static_cast<size_t>(rows * out), 0.0);
  mag.assign(y.size(), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < out; ++j) {
      double s = bias ? bias[j] : 0.0, m = bias ? std::fabs(bias[j]) : 0.0;
      for (int64_t k = 0; k < in; ++k) {
        s += static_cast<double>(x[i * in + k]) * wd[j * in + k];
        m += std::fabs(static_cast<double>(x[i * in + k]) * wd[j * in + k]);
      }
      y[i * out + j] = s;
      mag[i * out + j] = m;
    }
}

void expect_close(const std::vector<float>& y, const std::vector<double>& ref, const std::vector<double>& mag,
                  int64_t in) {
  ASSERT_EQ(y.size(), ref.size());
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_LE(std::fabs(y[i] - ref[i]), 2e-7 * static_cast<double>(in) * mag[i] + 1e-30) << i;
}

}  // namespace

TEST(Kernels, IsaListIsConsistent) {
  auto isas = available_isas();
  ASSERT_GE(isas.size(), 2u);
  EXPECT_EQ(isas.back(), best_isa() == Isa::avx512 ? Isa::avx512 : Isa::avx2);
  for (Isa isa : isas) EXPECT_NO_THROW(require_isa(isa));
}

TEST(Kernels, Blockwise4GemmMatchesDequantizedReference) {
  struct Shape4 {
    int64_t rows, out, in, blocksize;
  };
  // Fewer than kTiledGemmMinRows rows: the fused kernel; more: decoded tiles
  // + sgemm (several tiles, a partial last one, threaded).
  for (Shape4 s : {Shape4{1, 5, 64, 64}, {3, 17, 128, 32}, {8, 33, 256, 128}, {9, 40, 768, 64}, {13, 3, 4096, 4096},
                   {kTiledGemmMinRows, 40, 768, 64}, {37, 300, 256, 32}, {20, 7, 2048, 1024}})
    for (Code4 type : {Code4::nf4, Code4::fp4})
      for (bool dq : {false, true}) {
        std::vector<float> w = normal(static_cast<size_t>(s.out * s.in), 0.02f, 1);
        std::vector<float> x = normal(static_cast<size_t>(s.rows * s.in), 1.0f, 2);
        std::vector<float> b = normal(static_cast<size_t>(s.out), 0.1f, 3);
        Blockwise4Weight q = quantize_4bit(w.data(), s.out, s.in, {type, s.blocksize, dq});
        std::vector<float> wd(w.size());
        dequantize_4bit(q, wd.data());
        std::vector<double> ref, mag;
        reference_double(wd, b.data(), x, s.rows, s.out, s.in, ref, mag);
        std::vector<float> y(ref.size());
        blockwise4_matmul_reference(q, b.data(), x.data(), s.rows, y.data());
        expect_close(y, ref, mag, s.in);
        for (Isa isa : available_isas()) {
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + code4_name(type) + " in=" + std::to_string(s.in));
          std::fill(y.begin(), y.end(), NAN);
          blockwise4_matmul(q, b.data(), x.data(), s.rows, y.data(), isa);
          expect_close(y, ref, mag, s.in);
        }
      }
}

TEST(Kernels, Blockwise4RowsNotStartingABlockFallBackToReference) {
  // in % blocksize != 0: blocks straddle weight rows; the reference handles it.
  std::vector<float> w = normal(7 * 96, 0.02f, 4), x = normal(2 * 96, 1.0f, 5);
  Blockwise4Weight q = quantize_4bit(w.data(), 7, 96, {Code4::nf4, 64, false});
  std::vector<float> ref(14), y(14);
  blockwise4_matmul_reference(q, nullptr, x.data(), 2, ref.data());
  for (Isa isa : available_isas()) {
    blockwise4_matmul(q, nullptr, x.data(), 2, y.data(), isa);
    EXPECT_EQ(y, ref) << isa_name(isa);
  }
}

TEST(Kernels, Int8WeightGemmMatchesDequantizedReference) {
  // Below kTiledGemmMinRows rows the fused kernel, above it decoded tiles + sgemm.
  for (auto [rows, out, in] : {std::tuple<int64_t, int64_t, int64_t>{1, 3, 5}, {4, 31, 64}, {7, 40, 77}, {5, 64, 768},
                               {kTiledGemmMinRows, 40, 77}, {33, 300, 768}, {18, 5, 3}})
    for (Int8Scheme scheme : {Int8Scheme::affine, Int8Scheme::symmetric})
      for (Int8Granularity gran : {Int8Granularity::per_tensor, Int8Granularity::per_channel}) {
        std::vector<float> w = normal(static_cast<size_t>(out * in), 0.02f, 6);
        for (int64_t k = 0; k < in; ++k) w[k] = 0.3f + 0.01f * static_cast<float>(k % 7);  // large zero point
        std::vector<float> x = normal(static_cast<size_t>(rows * in), 1.0f, 7), b = normal(static_cast<size_t>(out), 0.1f, 8);
        Int8Weight q = quantize_int8(w.data(), out, in, scheme, gran);
        std::vector<float> wd(w.size());
        dequantize_int8(q, wd.data());
        std::vector<double> ref, mag;
        reference_double(wd, b.data(), x, rows, out, in, ref, mag);
        std::vector<float> y(ref.size());
        int8_matmul_reference(q, b.data(), x.data(), rows, y.data());
        expect_close(y, ref, mag, in);
        for (Isa isa : available_isas()) {
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + q.format() + " in=" + std::to_string(in));
          std::fill(y.begin(), y.end(), NAN);
          int8_matmul(q, b.data(), x.data(), rows, y.data(), isa);
          expect_close(y, ref, mag, in);
        }
      }
}

TEST(Kernels, Int8GemmI32ExactAtTheExtremes) {
  // Full int8 range on both sides, tails of every length up to 64 + 1.
  std::mt19937 rng(10);
  std::uniform_int_distribution<int> u(-128, 127);
  for (int64_t in : {1, 15, 16, 17, 63, 64, 65, 200, 3072}) {
    const int64_t rows = 6, out = 9;
    std::vector<int8_t> a(static_cast<size_t>(rows * in)), b(static_cast<size_t>(out * in));
    for (auto& v : a) v = static_cast<int8_t>(u(rng));
    for (auto& v : b) v = static_cast<int8_t>(u(rng));
    std::fill(a.begin(), a.begin() + in, int8_t{-128});  // row 0 all -128
    std::fill(b.begin(), b.begin() + in, int8_t{-128});  // weight row 0 all -128
    std::vector<int32_t> sums(static_cast<size_t>(out), 0);
    for (int64_t j = 0; j < out; ++j)
      for (int64_t k = 0; k < in; ++k) sums[j] += b[j * in + k];
    std::vector<int32_t> ref(static_cast<size_t>(rows * out));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < out; ++j) {
        int64_t s = 0;
        for (int64_t k = 0; k < in; ++k) s += int64_t{a[i * in + k]} * b[j * in + k];
        ref[i * out + j] = static_cast<int32_t>(s);
      }
    for (Isa isa : available_isas()) {
      std::vector<int32_t> c(ref.size(), -1);
      int8_gemm_i32({a.data(), rows, b.data(), sums.data(), in, out, c.data()}, isa);
      EXPECT_EQ(c, ref) << isa_name(isa) << " in=" << in;
    }
  }
}

