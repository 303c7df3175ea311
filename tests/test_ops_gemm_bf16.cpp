// The bf16 GEMM kernel (backend/cpu/gemm_bf16.h) against its scalar reference:
// packing bit for bit, products within fp32 summation error, and exactly
// where every partial sum is an exact fp32 integer.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/gemm_bf16.h"
#include "core/half.h"

using namespace gpt2q;

namespace {

std::vector<float> uniform(int64_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> small_integers(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-16, 16);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

float rounded(float v) { return bf16_to_float(float_to_bf16(v)); }

struct Product {
  std::vector<float> c;
  std::vector<uint16_t> ap, bp;
};

Product run_kernel(const std::vector<float>& a, int64_t m, const std::vector<float>& b, int64_t n, int64_t k,
                   const float* scale, const float* bias) {
  Product p;
  p.ap.resize(static_cast<size_t>(m * cpu::bf16_padded_k(k)));
  p.bp.resize(static_cast<size_t>(cpu::bf16_packed_b_elems(n, k)));
  cpu::bf16_pack_rows(a.data(), m, k, p.ap.data());
  cpu::bf16_pack_panels(b.data(), n, k, p.bp.data());
  // A wider output row than n: the kernel must leave the columns past n alone.
  const int64_t ldc = n + 3;
  std::vector<float> c(static_cast<size_t>(m * ldc), -7.0f);
  cpu::gemm_bf16_packed(p.ap.data(), m, p.bp.data(), n, k, scale, bias, c.data(), ldc);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = n; j < ldc; ++j) EXPECT_EQ(c[i * ldc + j], -7.0f) << "wrote past column n at " << i << "," << j;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) p.c.push_back(c[i * ldc + j]);
  return p;
}

// The shapes: every row remainder of the 6-row block, panels 1..4 and past,
// partial panels, odd k (padding), k past one 16-pair transpose block.
const std::vector<std::array<int64_t, 3>> kShapes = {{1, 1, 1},   {2, 15, 2},  {3, 16, 31}, {5, 17, 33},
                                                     {6, 64, 64}, {7, 70, 77}, {13, 33, 96}, {16, 130, 768}};

}  // namespace

TEST(GemmBf16, ScalarPackingLaysOutThePanelsAsDocumented) {
  const int64_t n = 19, k = 5, kp = 6, pairs = 3;
  const std::vector<float> b = uniform(n * k, -2, 2, 1);
  std::vector<uint16_t> packed(static_cast<size_t>(cpu::bf16_packed_b_elems(n, k)));
  cpu::bf16_pack_panels_scalar(b.data(), n, k, packed.data());
  ASSERT_EQ(packed.size(), static_cast<size_t>(2 * 16 * kp));
  for (int64_t j = 0; j < 32; ++j)
    for (int64_t kk = 0; kk < kp; ++kk) {
      const int64_t p = j / 16, c = j % 16, q = kk / 2, e = kk % 2;
      const uint16_t want = (j < n && kk < k) ? float_to_bf16(b[j * k + kk]) : 0;
      EXPECT_EQ(packed[((p * pairs + q) * 16 + c) * 2 + e], want) << j << "," << kk;
    }
}

TEST(GemmBf16, FastPackingEqualsScalarBitForBit) {
  if (!cpu::has_native_bf16_gemm()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  for (const auto& [m, n, k] : kShapes) {
    const std::vector<float> a = uniform(m * k, -3, 3, 2), b = uniform(n * k, -3, 3, 3);
    std::vector<uint16_t> fast(static_cast<size_t>(cpu::bf16_packed_b_elems(n, k))), slow(fast.size());
    cpu::bf16_pack_panels(b.data(), n, k, fast.data());
    cpu::bf16_pack_panels_scalar(b.data(), n, k, slow.data());
    EXPECT_EQ(fast, slow) << n << "x" << k;
    std::vector<uint16_t> fa(static_cast<size_t>(m * cpu::bf16_padded_k(k))), sa(fa.size());
    cpu::bf16_pack_rows(a.data(), m, k, fa.data());
    cpu::bf16_pack_rows_scalar(a.data(), m, k, sa.data());
    EXPECT_EQ(fa, sa) << m << "x" << k;
  }
}

TEST(GemmBf16, ExactOnSmallIntegers) {
  // |products| <= 256 and k <= 768: every partial sum is an integer below
  // 2^24, so any summation order gives the exact value.
  if (!cpu::has_native_bf16_gemm()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  for (const auto& [m, n, k] : kShapes) {
    const std::vector<float> a = small_integers(m * k, 4), b = small_integers(n * k, 5);
    const std::vector<float> bias = small_integers(n, 6);
    const Product p = run_kernel(a, m, b, n, k, nullptr, bias.data());
    std::vector<float> ref(static_cast<size_t>(m * n));
    cpu::gemm_bf16_reference(a.data(), m, b.data(), n, k, nullptr, bias.data(), ref.data(), n);
    EXPECT_EQ(p.c, ref) << m << "x" << n << "x" << k;
  }
}

TEST(GemmBf16, MatchesReferenceWithinFp32SummationError) {
  if (!cpu::has_native_bf16_gemm()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  for (const auto& [m, n, k] : kShapes) {
    const std::vector<float> a = uniform(m * k, -2, 2, 7), b = uniform(n * k, -0.1f, 0.1f, 8);
    const std::vector<float> scale = uniform(n, 0.5f, 2, 9), bias = uniform(n, -1, 1, 10);
    for (bool with_scale : {false, true}) {
      const float* s = with_scale ? scale.data() : nullptr;
      const Product p = run_kernel(a, m, b, n, k, s, bias.data());
      std::vector<float> ref(static_cast<size_t>(m * n));
      cpu::gemm_bf16_reference(a.data(), m, b.data(), n, k, s, bias.data(), ref.data(), n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double mag = 0;
          for (int64_t q = 0; q < k; ++q) mag += std::fabs(double(rounded(a[i * k + q])) * rounded(b[j * k + q]));
          const double sc = s ? s[j] : 1.0;
          const double tol = (k + 2) * std::ldexp(1.0, -24) * mag * sc + 4 * std::ldexp(1.0, -24) * std::fabs(ref[i * n + j]);
          ASSERT_LE(std::fabs(p.c[i * n + j] - ref[i * n + j]), tol) << m << "x" << n << "x" << k << " at " << i << "," << j;
        }
    }
  }
}

TEST(GemmBf16, ReferenceRoundsBothOperandsToBf16) {
  // 1 + 2^-10 is not a bf16 (it rounds to 1): the reference must see 1.
  const std::vector<float> a = {1.0f + std::ldexp(1.0f, -10)}, b = {3.0f};
  float c = 0;
  cpu::gemm_bf16_reference(a.data(), 1, b.data(), 1, 1, nullptr, nullptr, &c, 1);
  EXPECT_EQ(c, 3.0f);
}
