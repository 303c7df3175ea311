// Dense Linear with compute dtype bf16 on the CPU (ops::pack_linear_bf16,
// ops::linear_bf16; backend/cpu/bf16_linear.h): the weight rounded once as
// torch's .to(torch.bfloat16) does, and products against an independent
// double-precision evaluation of the definition, on the AVX512_BF16 kernel
// (where the CPU has it) and on the portable path (always).
//
// Tolerance: every product of the definition is exact in fp32 from 16 rows
// (8-bit × 8-bit significands) and rounded once (relative 2^-24) below; the
// fp32 sums of `in` terms plus the bias are then within (in + 4)·2^-24 of
// Σ|terms| + |bias| of the exact sum (the usual bound of recursive or blocked
// summation, γ_n ≈ n·u, with a little slack for the product rounding and the
// final conversion). The reference sums in double, whose own error is far
// below that.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include <fmt/format.h>

#include "backend/cpu/bf16_linear.h"
#include "backend/cpu/dequant_gemm.h"
#include "backend/cpu/gemm_bf16.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/ops.h"
#include "ops/reference.h"
#include "support/test_env.h"

using namespace gpt2q;
using cpu::kTiledGemmMinRows;

namespace {

double bf(float v) { return static_cast<double>(bf16_to_float(float_to_bf16(v))); }

// The portable path always; the native kernel where the CPU has AVX512_BF16.
std::vector<bool> paths() {
  cpu::set_bf16_gemm_emulation(false);
  if (cpu::has_native_bf16_gemm()) return {false, true};
  std::printf("[ SKIPPED  ] native bf16 kernel: this CPU has no AVX512_BF16; the portable path is tested\n");
  return {true};
}

struct Emulation {
  explicit Emulation(bool on) { cpu::set_bf16_gemm_emulation(on); }
  ~Emulation() { cpu::set_bf16_gemm_emulation(false); }
};

Tensor make(const std::vector<float>& v, Shape s) { return Tensor::from_vector(v, std::move(s)); }

// The definition in double: W rounded to bf16; x too from 16 rows.
void reference(const std::vector<float>& x, int64_t rows, const std::vector<float>& w, int64_t in, int64_t out,
               const std::vector<float>& b, std::vector<double>& ref, std::vector<double>& mag) {
  ref.assign(static_cast<size_t>(rows * out), 0);
  mag.assign(ref.size(), 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < out; ++j) {
      double s = b[j], m = std::fabs(b[j]);
      for (int64_t k = 0; k < in; ++k) {
        const double xv = rows >= kTiledGemmMinRows ? bf(x[i * in + k]) : static_cast<double>(x[i * in + k]);
        const double t = xv * bf(w[k * out + j]);
        s += t;
        m += std::fabs(t);
      }
      ref[i * out + j] = s;
      mag[i * out + j] = m;
    }
}

void expect_close(const Tensor& y, const std::vector<double>& ref, const std::vector<double>& mag, int64_t in) {
  const auto v = y.span<const float>();
  ASSERT_EQ(v.size(), ref.size());
  for (size_t i = 0; i < v.size(); ++i)
    ASSERT_LE(std::fabs(v[i] - ref[i]), (in + 4) * std::ldexp(1.0, -24) * mag[i] + 1e-30)
        << i << ": " << v[i] << " vs " << ref[i];
}

// rows (below, at and above 16), out (partial panels, several tiles), in (odd: padded k).
const std::vector<std::tuple<int64_t, int64_t, int64_t>> kShapes = {
    {1, 40, 64}, {15, 33, 77}, {kTiledGemmMinRows, 40, 64}, {17, 33, 77}, {37, 400, 768}, {20, 7, 255}, {3, 200, 31}};

}  // namespace

TEST(LinearBf16, PackingRoundsEachWeightToNearestEvenOnce) {
  const int64_t in = 37, out = 21;
  std::vector<float> w = test::normal_values(in * out, 0.05f, 11);
  // Ties and near-ties: 1 + 2^-8 is halfway between bf16 neighbours 1 and
  // 1 + 2^-7 and goes to the even one (1); 1 + 3·2^-8 goes up to 1 + 2^-6;
  // a subnormal stays (torch keeps them).
  w[0] = 1.0f + std::ldexp(1.0f, -8);
  w[1] = 1.0f + 3 * std::ldexp(1.0f, -8);
  w[2] = std::ldexp(1.0f, -130);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor t = make(w, {in, out});
    if (dt != DType::F32) {
      Tensor h = Tensor::empty({in, out}, dt);
      ops::cast(t, h);  // rounds to nearest even
      t = h;
    }
    const Tensor packed = ops::pack_linear_bf16(t);
    ASSERT_EQ(packed.dtype(), DType::BF16);
    ASSERT_EQ(packed.numel(), cpu::bf16_linear_packed_elems(in, out));
    for (int64_t k = 0; k < in; ++k)
      for (int64_t j = 0; j < out; ++j) {
        // F16 / BF16 inputs: their exact value, then the same rounding.
        const float stored = dt == DType::F32    ? w[k * out + j]
                             : dt == DType::F16 ? half_to_float(float_to_half(w[k * out + j]))
                                                : bf16_to_float(float_to_bf16(w[k * out + j]));
        ASSERT_EQ(cpu::bf16_linear_weight_at(packed.data<uint16_t>(), in, k, j), bf16_to_float(float_to_bf16(stored)))
            << k << "," << j;
      }
    if (dt == DType::F32) {
      EXPECT_EQ(cpu::bf16_linear_weight_at(packed.data<uint16_t>(), in, 0, 0), 1.0f);
      EXPECT_EQ(cpu::bf16_linear_weight_at(packed.data<uint16_t>(), in, 0, 1), 1.0f + std::ldexp(1.0f, -6));
      EXPECT_EQ(cpu::bf16_linear_weight_at(packed.data<uint16_t>(), in, 0, 2), std::ldexp(1.0f, -130));
    }
  }
}

TEST(LinearBf16, MatchesTheDefinitionOnEveryPath) {
  for (auto [rows, out, in] : kShapes) {
    const std::vector<float> w = test::normal_values(in * out, 0.05f, 1), x = test::normal_values(rows * in, 1.0f, 2),
                             b = test::normal_values(out, 0.1f, 3);
    std::vector<double> ref, mag;
    reference(x, rows, w, in, out, b, ref, mag);
    const Tensor packed = ops::pack_linear_bf16(make(w, {in, out}));
    for (bool emulated : paths()) {
      Emulation e(emulated);
      SCOPED_TRACE(fmt::format("rows {} out {} in {} {}", rows, out, in, emulated ? "emulated" : "native"));
      Tensor y = Tensor::empty({rows, out}, DType::F32);
      ops::linear_bf16(make(x, {rows, in}), packed, in, out, make(b, {out}), y);
      expect_close(y, ref, mag, in);
      Tensor yr = Tensor::empty({rows, out}, DType::F32);
      ops::reference::linear_bf16(make(x, {rows, in}), packed, in, out, make(b, {out}), yr);
      expect_close(yr, ref, mag, in);
    }
  }
}

// Small integers: every value, product and sum is exact in bf16 / fp32, so
// every path gives the exact result, and x's rounding shows: 257 is not a
// bf16 value (it rounds to 256) but is an fp32 one.
TEST(LinearBf16, ExactOnIntegersAndRoundsActivationsFrom16Rows) {
  const int64_t in = 5, out = 3;
  std::vector<float> w(in * out);
  for (int64_t i = 0; i < in * out; ++i) w[i] = static_cast<float>(i % 7 - 3);
  const Tensor packed = ops::pack_linear_bf16(make(w, {in, out}));
  for (int64_t rows : {int64_t{1}, kTiledGemmMinRows}) {
    std::vector<float> x(rows * in);
    for (int64_t i = 0; i < rows * in; ++i) x[i] = static_cast<float>(i % 5) - 2;
    x[0] = 257;
    for (bool emulated : paths()) {
      Emulation e(emulated);
      Tensor y = Tensor::empty({rows, out}, DType::F32);
      ops::linear_bf16(make(x, {rows, in}), packed, in, out, Tensor(), y);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < out; ++j) {
          double s = 0;
          for (int64_t k = 0; k < in; ++k) {
            const float xv = (i == 0 && k == 0 && rows >= kTiledGemmMinRows) ? 256.0f : x[i * in + k];
            s += static_cast<double>(xv) * w[k * out + j];
          }
          ASSERT_EQ(y.data<float>()[i * out + j], s) << rows << " rows, " << i << "," << j;
        }
    }
  }
}

TEST(LinearBf16, EpiloguesAsSeparateOps) {
  const int64_t rows = 20, in = 64, out = 48;
  const auto w = test::normal_values(in * out, 0.05f, 7), x = test::normal_values(rows * in, 1.0f, 8),
             b = test::normal_values(out, 0.1f, 9), r = test::normal_values(rows * out, 1.0f, 10);
  const Tensor packed = ops::pack_linear_bf16(make(w, {in, out}));
  Tensor plain = Tensor::empty({rows, out}, DType::F32);
  ops::linear_bf16(make(x, {rows, in}), packed, in, out, make(b, {out}), plain);
  Tensor acc = make(r, {rows, out});
  ops::linear_bf16(make(x, {rows, in}), packed, in, out, make(b, {out}), acc, {ops::Activation::none, true});
  Tensor gelu = Tensor::empty({rows, out}, DType::F32);
  ops::linear_bf16(make(x, {rows, in}), packed, in, out, make(b, {out}), gelu, {ops::Activation::gelu_new, false});
  Tensor want_gelu = plain.clone();
  ops::gelu_new(want_gelu);
  for (int64_t i = 0; i < rows * out; ++i) {
    ASSERT_EQ(acc.data<float>()[i], r[i] + plain.data<float>()[i]) << i;
    ASSERT_EQ(gelu.data<float>()[i], want_gelu.data<float>()[i]) << i;
  }
}

TEST(LinearBf16, BadArgumentsFail) {
  const Tensor packed = ops::pack_linear_bf16(make(std::vector<float>(6, 1.0f), {2, 3}));
  Tensor y = Tensor::empty({1, 3}, DType::F32);
  EXPECT_THROW(ops::linear_bf16(Tensor::empty({1, 2}, DType::F32), packed, 3, 2, Tensor(), y), Error);
  EXPECT_THROW(ops::linear_bf16(Tensor::empty({1, 3}, DType::F32), packed, 2, 3, Tensor(), y), Error);
  EXPECT_THROW(ops::pack_linear_bf16(Tensor::empty({6}, DType::F32)), Error);
  EXPECT_THROW(ops::linear_bf16(Tensor::empty({1, 2}, DType::F32), Tensor::empty({64}, DType::F32), 2, 3, Tensor(), y),
               Error);
}
