// The dense Linear with 16-bit weights (layers/dense_linear.h,
// backend/cpu/half_gemm.h) against the fp32 reference: the
// whole weight converted with core/half.h, then ops::linear. Both kernels
// (fused for few rows, converted blocks + sgemm for many) on odd sizes,
// fp16 and bf16, with and without bias; the converted values exactly (an
// identity input reads the weight back); the bytes held; and make_linear
// keeping a plain checkpoint's 16-bit weight as a view, a quantized one's as
// a copy.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "core/half.h"
#include "model/gpt2.h"
#include "layers/dense_linear.h"
#include "layers/linear_factory.h"
#include "model/synthetic_weights.h"
#include "ops/ops.h"
#include "quant/quant_config.h"
#include "support/test_env.h"

using namespace gpt2q;

namespace {

uint16_t to_16bit(float v, DType dtype) { return dtype == DType::F16 ? float_to_half(v) : float_to_bf16(v); }
float from_16bit(uint16_t v, DType dtype) { return dtype == DType::F16 ? half_to_float(v) : bf16_to_float(v); }

// A 16-bit [in, out] weight; every 7th value is tiny (fp16 subnormals).
Tensor weight16(int64_t in, int64_t out, DType dtype, uint64_t seed) {
  Tensor w = Tensor::empty({in, out}, dtype);
  for (int64_t i = 0; i < w.numel(); ++i) {
    const float v = synthetic_value("half_linear.w", seed, static_cast<uint64_t>(i)) * 0.1f;
    w.data<uint16_t>()[i] = to_16bit(i % 7 == 0 ? v * 1e-4f : v, dtype);
  }
  return w;
}

// The reference's weight: every value converted by core/half.h.
Tensor converted(const Tensor& w) {
  Tensor f = Tensor::empty(w.shape(), DType::F32);
  for (int64_t i = 0; i < w.numel(); ++i) f.data<float>()[i] = from_16bit(w.data<uint16_t>()[i], w.dtype());
  return f;
}

std::vector<float> values(const char* name, int64_t n, float scale, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = synthetic_value(name, seed, static_cast<uint64_t>(i)) * scale;
  return v;
}

std::vector<float> abs_of(std::span<const float> v) {
  std::vector<float> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::abs(v[i]);
  return a;
}

// y = lin(x) for rows of x, y poisoned with NaN first (must be overwritten).
std::vector<float> run(const Linear& lin, const float* x, int64_t rows) {
  Tensor xt = Tensor::empty({rows, lin.in_features()}, DType::F32);
  std::copy(x, x + rows * lin.in_features(), xt.data<float>());
  Tensor yt = Tensor::empty({rows, lin.out_features()}, DType::F32);
  for (float& v : yt.span<float>()) v = std::nanf("");
  lin.forward(xt, yt);
  return std::vector<float>(yt.span<float>().begin(), yt.span<float>().end());
}

Tensor bias_of(const std::vector<float>& b) {
  return b.empty() ? Tensor() : Tensor::from_vector(b, {static_cast<int64_t>(b.size())});
}

DenseLinear dense(const Tensor& w, const std::vector<float>& bias) { return DenseLinear(w, bias_of(bias), Placement{}); }

struct Size {
  int64_t in, out;
};

// Odd sizes: partial 32-column tiles and 8-column groups, a scalar column
// tail, fewer columns than one group; 1100 x 1031 is converted in 2 blocks
// of 550 rows (4 MiB of fp32 at most each).
const Size kSizes[] = {{37, 45}, {1, 3}, {64, 96}, {257, 531}, {3001, 70}, {16, 7}, {1100, 1031}};
// Up to cpu::kHalfLinearFusedMaxRows (8) the fused kernel runs, beyond it the blocked one.
const int64_t kRows[] = {1, 2, 3, 5, 8, 9, 33};

TEST(DenseLinear16, EqualsFp32LinearOfTheConvertedWeight) {
  for (DType dtype : {DType::F16, DType::BF16})
    for (const Size& s : kSizes)
      for (bool with_bias : {true, false}) {
        const Tensor w = weight16(s.in, s.out, dtype, static_cast<uint64_t>(s.in * 1000 + s.out));
        const Tensor w32 = converted(w);
        const Tensor w32_abs = Tensor::from_vector(abs_of(w32.span<float>()), {s.in, s.out});
        const std::vector<float> bias = with_bias ? values("half_linear.b", s.out, 0.02f, 1) : std::vector<float>{};
        const DenseLinear lin = dense(w, bias);
        const double tol = 2.0 * static_cast<double>(s.in + 1) * std::ldexp(1.0, -24);
        ASSERT_EQ(lin.in_features(), s.in);
        ASSERT_EQ(lin.out_features(), s.out);
        for (int64_t rows : kRows) {
          const std::vector<float> x = values("half_linear.x", rows * s.in, 1.0f, static_cast<uint64_t>(rows));
          const std::vector<float> y = run(lin, x.data(), rows);
          Tensor ref = Tensor::empty({rows, s.out}, DType::F32);
          ops::linear(Tensor::from_vector(x, {rows, s.in}), w32,
                      with_bias ? Tensor::from_vector(bias, {s.out}) : Tensor(), ref);
          // Σ|terms| per output: |x| · |W| + |b| (all terms positive, so
          // fp32 gives it to within (in + 1)·u, which the bound absorbs).
          Tensor mag = Tensor::empty({rows, s.out}, DType::F32);
          ops::linear(Tensor::from_vector(abs_of(x), {rows, s.in}), w32_abs,
                      with_bias ? Tensor::from_vector(abs_of(bias), {s.out}) : Tensor(), mag);
          for (int64_t i = 0; i < rows * s.out; ++i) {
            // Two fp32 sums of in + 1 terms in different orders: each is
            // within (in + 1)·u·Σ|terms| of the exact sum (u = 2^-24).
            ASSERT_NEAR(y[i], ref.data<float>()[i], 1.01 * tol * mag.data<float>()[i] + 1e-30)
                << dtype_name(dtype) << " " << s.in << "x" << s.out << " rows " << rows << " bias " << with_bias
                << " at " << i / s.out << "," << i % s.out;
          }
        }
      }
}

// x = identity: row k of y is row k of the weight, exactly as core/half.h
// converts it (the fused kernel one row at a time, the blocked one at once).
TEST(DenseLinear16, ConvertsExactlyAsCoreHalf) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    const int64_t in = 45, out = 83;
    Tensor w = weight16(in, out, dtype, 5);
    // Extremes of the format too: the largest finite, the smallest subnormal, -0.
    w.data<uint16_t>()[1] = dtype == DType::F16 ? 0x7bff : 0x7f7f;
    w.data<uint16_t>()[2] = 0x0001;
    w.data<uint16_t>()[3] = 0x8000;
    const Tensor w32 = converted(w);
    const DenseLinear lin = dense(w, {});
    std::vector<float> eye(static_cast<size_t>(in * in), 0.0f);
    for (int64_t k = 0; k < in; ++k) eye[k * in + k] = 1.0f;
    const std::vector<float> all = run(lin, eye.data(), in);
    for (int64_t k = 0; k < in; ++k) {
      const std::vector<float> one = run(lin, eye.data() + k * in, 1);
      for (int64_t j = 0; j < out; ++j) {
        const float expect = w32.data<float>()[k * out + j];
        ASSERT_EQ(one[j], expect) << dtype_name(dtype) << " fused, at " << k << "," << j;
        ASSERT_EQ(all[k * out + j], expect) << dtype_name(dtype) << " blocked, at " << k << "," << j;
      }
    }
  }
}

TEST(DenseLinear16, HoldsTwoBytesPerWeightAndSharesTheTensor) {
  const Tensor w = weight16(100, 60, DType::BF16, 9);
  const DenseLinear lin = dense(w, values("half_linear.b", 60, 0.02f, 2));
  EXPECT_EQ(lin.bytes(), static_cast<size_t>(100 * 60 * 2 + 60 * 4));
  EXPECT_EQ(lin.format(), "bf16");
  EXPECT_EQ(lin.weight().raw(), w.raw());
  EXPECT_EQ(dense(weight16(3, 4, DType::F16, 1), {}).format(), "f16");
}

TEST(DenseLinear16, RejectsWrongWeightsAndBias) {
  EXPECT_THROW(dense(Tensor::empty({3, 4}, DType::I32), {}), Error);
  EXPECT_THROW(dense(Tensor::empty({12}, DType::F16), {}), Error);
  EXPECT_THROW(dense(weight16(3, 4, DType::F16, 1), std::vector<float>(3)), Error);
  EXPECT_THROW(make_dense_linear(weight16(3, 4, DType::F16, 1), Tensor::from_vector(std::vector<float>(3), {3})), Error);
}

Checkpoint sixteen_bit_checkpoint(DType dtype, bool quantized) {
  GPT2Config c = geometry_config("32x1x2", "test");
  c.vocab_size = 50;
  c.n_positions = 16;
  Checkpoint ck = make_synthetic_checkpoint(c, ModelKind::CausalLM, 3);
  for (auto& [name, t] : ck.tensors) {
    Tensor h = Tensor::empty(t.shape(), dtype);
    for (int64_t i = 0; i < t.numel(); ++i) h.data<uint16_t>()[i] = to_16bit(t.data<float>()[i], dtype);
    t = h;
  }
  if (quantized) ck.quantization_config = quant::QuantizationConfig{}.to_json();
  return ck;
}

TEST(DenseLinear16, MakeLinearKeepsPlainCheckpointsAsViewsAndQuantizedOnesAsCopies) {
  for (DType dtype : {DType::F16, DType::BF16})
    for (bool quantized : {false, true}) {
      const Checkpoint ck = sixteen_bit_checkpoint(dtype, quantized);
      for (const char* module : {"h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj"}) {
        const auto lin = make_linear(ck, module);
        const Shape s = block_linear_shape(ck.config, module);
        EXPECT_EQ(lin->format(), dtype == DType::F16 ? "f16" : "bf16");
        EXPECT_EQ(lin->bytes(), static_cast<size_t>(s[0] * s[1] * 2 + s[1] * 4));
        const auto* half = dynamic_cast<const DenseLinear*>(lin.get());
        ASSERT_NE(half, nullptr);
        const Tensor& stored = ck.get(std::string(module) + ".weight");
        EXPECT_EQ(half->weight().raw() == stored.raw(), !quantized) << module;
        EXPECT_EQ(std::memcmp(half->weight().raw(), stored.raw(), stored.nbytes()), 0) << module;
      }
    }
}

// From disk: the loaded model's projections are the file's mapping (borrowed
// storage), 2 bytes per weight, and run as 16-bit Linears.
TEST(DenseLinear16, LoadedSixteenBitModelsHoldTheMappedWeights) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    const Checkpoint ck = sixteen_bit_checkpoint(dtype, false);
    std::vector<std::pair<std::string, Tensor>> tensors(ck.tensors.begin(), ck.tensors.end());
    const auto dir = test::temp_dir("half_linear") / "ckpt";
    save_checkpoint(dir, ck.config, ck.kind, tensors);
    const auto model = GPT2Model::load(dir);
    const auto& bw = model->blocks().at(0);
    for (const Linear* l : {bw.c_attn.get(), bw.attn_c_proj.get(), bw.c_fc.get(), bw.mlp_c_proj.get()}) {
      const auto* half = dynamic_cast<const DenseLinear*>(l);
      ASSERT_NE(half, nullptr);
      EXPECT_FALSE(half->weight().storage()->owned());
      EXPECT_EQ(l->bytes(), static_cast<size_t>(l->in_features() * l->out_features() * 2 + l->out_features() * 4));
    }
    // The same logits as the in-memory model.
    const TokenBatch tb = TokenBatch::from_sequences({{1, 2, 3, 4, 5, 6, 7}, {8, 9}}, 0);
    const Tensor a = model->lm_logits(tb), b = GPT2Model::from_checkpoint(ck)->lm_logits(tb);
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  }
}

// A CPU placement with compute BF16: every block projection of a dense
// checkpoint holds its weight rounded to bf16 and packed (nothing else), and
// runs ops::linear_bf16 on it.
TEST(DenseLinearBf16Compute, HoldsOnlyThePackedBf16Weight) {
  const Placement bf16{Device::CPU, DType::BF16};
  const std::vector<float> w = test::normal_values(37 * 45, 0.05f, 3), b = test::normal_values(45, 0.1f, 4);
  const Tensor wt = Tensor::from_vector(w, {37, 45});
  const auto lin = make_dense_linear(wt, bias_of(b), bf16);
  EXPECT_EQ(lin->format(), "bf16");
  EXPECT_FALSE(lin->weight().defined()) << "the fp32 weight is let go";
  const Tensor packed = ops::pack_linear_bf16(wt);
  ASSERT_EQ(lin->packed_bf16().numel(), packed.numel());
  EXPECT_EQ(std::memcmp(lin->packed_bf16().raw(), packed.raw(), packed.nbytes()), 0);
  EXPECT_EQ(lin->bytes(), packed.nbytes() + 45 * 4);
  EXPECT_EQ(lin->in_features(), 37);
  EXPECT_EQ(lin->out_features(), 45);
  for (int64_t rows : {1, 20}) {
    const std::vector<float> x = test::normal_values(rows * 37, 1.0f, 5);
    Tensor want = Tensor::empty({rows, 45}, DType::F32);
    ops::linear_bf16(Tensor::from_vector(x, {rows, 37}), packed, 37, 45, bias_of(b), want);
    const auto got = run(*lin, x.data(), rows);
    EXPECT_EQ(std::memcmp(got.data(), want.raw(), want.nbytes()), 0) << rows << " rows";
  }
  // A whole model: every projection is bf16, the logits close to fp32's.
  GPT2Config cfg;
  cfg.vocab_size = 64;
  cfg.n_positions = 32;
  cfg.n_embd = 32;
  cfg.n_head = 2;
  cfg.n_layer = 2;
  const Checkpoint ck = make_synthetic_checkpoint(cfg, ModelKind::CausalLM, 11);
  const auto model = GPT2Model::from_checkpoint(ck, bf16);
  for (const auto& bw : model->blocks())
    for (const Linear* l : {bw.c_attn.get(), bw.attn_c_proj.get(), bw.c_fc.get(), bw.mlp_c_proj.get()})
      EXPECT_EQ(l->format(), "bf16");
  std::vector<int32_t> seq(20);
  for (int i = 0; i < 20; ++i) seq[i] = (i * 7) % 64;
  const TokenBatch tb = TokenBatch::from_sequences({seq}, 0);
  const Tensor a = model->lm_logits(tb), f = GPT2Model::from_checkpoint(ck)->lm_logits(tb);
  float largest = 0, diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    largest = std::max(largest, std::fabs(f.data<float>()[i]));
    diff = std::max(diff, std::fabs(a.data<float>()[i] - f.data<float>()[i]));
  }
  // bf16's 2^-9 relative rounding per operand, a few products deep: far
  // below 2^-5 of the largest logit; not zero (the rounding happened).
  EXPECT_LE(diff, std::ldexp(largest, -5));
  EXPECT_GT(diff, 0.0f);
}

}  // namespace
