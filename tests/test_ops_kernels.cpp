// Fast CPU ops (ops.h) against the scalar reference (ops/reference.h) on
// random inputs, plus the checks every op makes on its arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/simd_math.h"
#include "ops/ops.h"
#include "ops/reference.h"
#include "support/test_env.h"

using namespace gpt2q;
using test::expect_close;

namespace {

Tensor random_tensor(Shape shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::mt19937_64 rng(seed);
  for (float& v : t.span<float>()) v = lo + (hi - lo) * static_cast<float>((rng() >> 40) * 0x1p-24);
  return t;
}


}  // namespace

TEST(OpsKernels, LinearMatchesReference) {
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {13, 64, 96}, {128, 768, 200}, {3, 1, 4}}) {
    Tensor x = random_tensor({rows, in}, 1), w = random_tensor({in, out}, 2), b = random_tensor({out}, 3);
    for (bool with_bias : {true, false}) {
      Tensor bias = with_bias ? b : Tensor();
      Tensor y = Tensor::empty({rows, out}, DType::F32), yr = Tensor::empty({rows, out}, DType::F32);
      y.data<float>()[0] = NAN;  // stale output contents must not leak into the result
      ops::linear(x, w, bias, y);
      ops::reference::linear(x, w, bias, yr);
      expect_close(y, yr, 1e-5, "linear");
    }
  }
}

TEST(OpsKernels, LinearAcceptsBatchedInput) {
  Tensor x = random_tensor({2, 3, 8}, 4), w = random_tensor({8, 6}, 5), b = random_tensor({6}, 6);
  Tensor y = Tensor::empty({2, 3, 6}, DType::F32), yr = Tensor::empty({2, 3, 6}, DType::F32);
  ops::linear(x, w, b, y);
  ops::reference::linear(x, w, b, yr);
  expect_close(y, yr, 1e-5, "linear 3-D");
}

TEST(OpsKernels, MatmulNtMatchesReference) {
  // One row goes through sgemv, more through sgemm.
  for (int64_t m : {17, 1}) {
    Tensor a = random_tensor({m, 48}, 7), b = random_tensor({301, 48}, 8);
    Tensor c = Tensor::empty({m, 301}, DType::F32), cr = Tensor::empty({m, 301}, DType::F32);
    c.data<float>()[0] = NAN;  // stale output contents must not leak into the result
    ops::matmul_nt(a, b, c);
    ops::reference::matmul_nt(a, b, cr);
    expect_close(c, cr, 1e-5, "matmul_nt");
  }
}

// linear_nt (w [out, in]: bias and epilogue after the product), fast and
// reference, against linear on the transposed weight.
TEST(OpsKernels, LinearNtEqualsLinearOnTheTransposedWeight) {
  const Tensor x = random_tensor({5, 37}, 11), w = random_tensor({37, 19}, 12), b = random_tensor({19}, 13);
  Tensor wt = Tensor::empty({19, 37}, DType::F32);
  for (int64_t k = 0; k < 37; ++k)
    for (int64_t j = 0; j < 19; ++j) wt.data<float>()[j * 37 + k] = w.data<float>()[k * 19 + j];
  for (int epi = 0; epi < 3; ++epi) {
    ops::Epilogue e;
    if (epi == 1) e.activation = ops::Activation::gelu_new;
    if (epi == 2) e.accumulate = true;
    Tensor want = random_tensor({5, 19}, 14), got = want.clone(), ref = want.clone();
    ops::linear(x, w, b, want, e);
    ops::linear_nt(x, wt, b, got, e);
    ops::reference::linear_nt(x, wt, b, ref, e);
    expect_close(got, want, 1e-5, "linear_nt");
    expect_close(ref, want, 1e-5, "reference linear_nt");
  }
}

TEST(OpsKernels, LayerNormMatchesReferenceEvenWithLargeMean) {
  // A large common offset is where a one-pass E[x²] - E[x]² variance fails.
  for (float offset : {0.0f, 300.0f}) {
    Tensor x = random_tensor({9, 771}, 9, offset - 2.0f, offset + 2.0f);
    Tensor w = random_tensor({771}, 10, 0.5f, 1.5f), b = random_tensor({771}, 11);
    Tensor y = Tensor::empty({9, 771}, DType::F32), yr = Tensor::empty({9, 771}, DType::F32);
    ops::layer_norm(x, w, b, 1e-5f, y);
    ops::reference::layer_norm(x, w, b, 1e-5f, yr);
    expect_close(y, yr, 1e-5, "layer_norm");
  }
  Tensor x = random_tensor({4, 32}, 12);
  Tensor in_place = x.clone(), yr = Tensor::empty({4, 32}, DType::F32);
  Tensor w = random_tensor({32}, 13), b = random_tensor({32}, 14);
  ops::layer_norm(in_place, w, b, 1e-5f, in_place);
  ops::reference::layer_norm(x, w, b, 1e-5f, yr);
  expect_close(in_place, yr, 1e-5, "layer_norm in place");
}

TEST(OpsKernels, GeluNewMatchesReference) {
  // Odd length exercises the vector tail; the range covers saturation on both sides.
  Tensor x = random_tensor({1001}, 15, -12.0f, 12.0f);
  x.data<float>()[0] = 0.0f;
  x.data<float>()[1] = -1e-30f;
  x.data<float>()[2] = 90.0f;
  x.data<float>()[3] = -90.0f;
  Tensor y = x.clone(), yr = x.clone();
  ops::gelu_new(y);
  ops::reference::gelu_new(yr);
  auto g = y.span<float>(), w = yr.span<float>();
  for (size_t i = 0; i < g.size(); ++i) {
    // Relative to |x|: gelu_new(x) is x times a factor in [0, 1], and for
    // very negative x the true value is far below float resolution of x.
    double tol = 1e-6 * std::fabs(x.data<float>()[i]) + 1e-30;
    EXPECT_NEAR(g[i], w[i], tol) << "x = " << x.data<float>()[i];
  }
}

TEST(OpsKernels, GeluErfMatchesReference) {
  Tensor x = random_tensor({257}, 16, -8.0f, 8.0f);
  Tensor y = x.clone(), yr = x.clone();
  ops::gelu_erf(y);
  ops::reference::gelu_erf(yr);
  for (int64_t i = 0; i < 257; ++i)
    EXPECT_NEAR(y.data<float>()[i], yr.data<float>()[i], 1e-6 * std::fabs(x.data<float>()[i]) + 1e-30);
}

TEST(OpsKernels, Exp8WithinTwoUlpOfLibm) {
  std::mt19937_64 rng(17);
  std::vector<float> xs;
  for (int i = 0; i < 20000; ++i) xs.push_back(-110.0f + 200.0f * static_cast<float>((rng() >> 40) * 0x1p-24));
  for (float special : {0.0f, -0.0f, 1.0f, -1.0f, 88.7f, 88.72f, -87.3f, -100.0f, -103.9f, -104.0f, 89.0f})
    xs.push_back(special);
  while (xs.size() % 8) xs.push_back(0.5f);
  for (size_t i = 0; i < xs.size(); i += 8) {
    alignas(32) float out[8];
    _mm256_store_ps(out, cpu::simd::exp8(_mm256_loadu_ps(&xs[i])));
    for (int j = 0; j < 8; ++j) {
      float want = std::exp(xs[i + j]);
      if (std::isinf(want) || want == 0.0f || want < std::numeric_limits<float>::min()) {
        // Overflow gives inf; underflow and the denormal range give the
        // denormal or zero within one denormal step of the truth.
        if (std::isinf(want)) {
          EXPECT_TRUE(std::isinf(out[j])) << xs[i + j];
        } else {
          EXPECT_NEAR(out[j], want, 2 * std::numeric_limits<float>::denorm_min()) << xs[i + j];
        }
        continue;
      }
      const double ulp = static_cast<double>(std::nextafter(want, INFINITY)) - want;
      EXPECT_LE(std::fabs(static_cast<double>(out[j]) - want), 2.0 * ulp) << xs[i + j];
    }
  }
  alignas(32) float nan_in[8] = {NAN, 0, 0, 0, 0, 0, 0, -INFINITY};
  alignas(32) float out[8];
  _mm256_store_ps(out, cpu::simd::exp8(_mm256_load_ps(nan_in)));
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_EQ(out[7], 0.0f);
}

TEST(OpsKernels, SoftmaxMatchesReferenceAndIgnoresMinusInf) {
  Tensor x = random_tensor({6, 37}, 18, -20.0f, 20.0f);
  for (int c = 30; c < 37; ++c) x.data<float>()[2 * 37 + c] = -INFINITY;
  Tensor y = x.clone(), yr = x.clone();
  ops::softmax_lastdim(y);
  ops::reference::softmax_lastdim(yr);
  expect_close(y, yr, 1e-5, "softmax");
  for (int c = 30; c < 37; ++c) EXPECT_EQ(y.data<float>()[2 * 37 + c], 0.0f);
  for (int r = 0; r < 6; ++r) {
    double s = 0;
    for (int c = 0; c < 37; ++c) s += y.data<float>()[r * 37 + c];
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
}

TEST(OpsKernels, AddAndEmbeddingAreExact) {
  Tensor x = random_tensor({5, 9}, 19), y = random_tensor({5, 9}, 20);
  Tensor a = x.clone(), ar = x.clone();
  ops::add_inplace(a, y);
  ops::reference::add_inplace(ar, y);
  for (int i = 0; i < 45; ++i) EXPECT_EQ(a.data<float>()[i], ar.data<float>()[i]);

  Tensor wte = random_tensor({11, 6}, 21), wpe = random_tensor({8, 6}, 22);
  Tensor ids = Tensor::from_vector<int32_t>({3, 0, 10, 3}, {4});
  Tensor pos = Tensor::from_vector<int64_t>({0, 1, 2, 7}, {4});
  Tensor e = Tensor::empty({4, 6}, DType::F32), er = Tensor::empty({4, 6}, DType::F32);
  ops::embedding(ids, pos, wte, wpe, e);
  ops::reference::embedding(ids, pos, wte, wpe, er);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(e.data<float>()[i], er.data<float>()[i]);
  EXPECT_EQ(e.data<float>()[2 * 6 + 1], wte.data<float>()[10 * 6 + 1] + wpe.data<float>()[2 * 6 + 1]);

  Tensor bad_id = Tensor::from_vector<int32_t>({11}, {1}), bad_pos = Tensor::from_vector<int64_t>({8}, {1});
  Tensor one = Tensor::empty({1, 6}, DType::F32);
  Tensor pos0 = Tensor::from_vector<int64_t>({0}, {1});
  Tensor id0 = Tensor::from_vector<int32_t>({0}, {1});
  EXPECT_THROW(ops::embedding(bad_id, pos0, wte, wpe, one), Error);
  EXPECT_THROW(ops::embedding(id0, bad_pos, wte, wpe, one), Error);
}

TEST(OpsKernels, ShapeAndDtypeErrors) {
  Tensor x = random_tensor({4, 8}, 23), w = random_tensor({7, 3}, 24);
  Tensor y = Tensor::empty({4, 3}, DType::F32);
  EXPECT_THROW(ops::linear(x, w, Tensor(), y), Error);
  Tensor xi = Tensor::empty({4, 8}, DType::I32);
  Tensor w8 = random_tensor({8, 3}, 25);
  EXPECT_THROW(ops::linear(xi, w8, Tensor(), y), Error);
  Tensor wrong_out = Tensor::empty({4, 4}, DType::F32);
  EXPECT_THROW(ops::linear(x, w8, Tensor(), wrong_out), Error);
  Tensor z = random_tensor({4, 9}, 26);
  EXPECT_THROW(ops::add_inplace(x, z), Error);
}

TEST(OpsKernels, OtherDevicesAreRejectedAtTheDispatchPoint) {
  // A tensor that claims to live on the GPU (never dereferenced): the CPU
  // build has no kernel for it and must say so instead of touching memory.
  static float dummy[8];
  auto storage = Storage::borrow(dummy, sizeof(dummy), nullptr, Device::CUDA);
  Tensor gx = Tensor::from_storage(storage, 0, {2, 4}, DType::F32);
  Tensor gy = Tensor::from_storage(storage, 0, {2, 4}, DType::F32);
  Tensor cx = random_tensor({2, 4}, 27);
  EXPECT_THROW(ops::add_inplace(cx, gy), Error);  // mixed devices: caught before dispatch in every build
#ifndef GPT2Q_CUDA
  // (A GPT2Q_CUDA build has kernels for gx and gy; test_cuda_ops covers that path.)
  try {
    ops::add_inplace(gx, gy);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no implementation for device"), std::string::npos) << e.what();
  }
#endif
}

TEST(OpsKernels, ScratchBuffersAreReusedAndReleasable) {
  cpu::release_scratch_cache();
  void* first = nullptr;
  {
    Tensor a = ops::scratch({1 << 19});  // 2 MiB: cached on release
    first = a.raw();
    a.data<float>()[(1 << 19) - 1] = 1.0f;  // writable to the end
    EXPECT_EQ(cpu::scratch_cache_bytes(), 0u);
  }
  EXPECT_EQ(cpu::scratch_cache_bytes(), size_t{2} << 20);
  {
    Tensor b = ops::scratch({(1 << 19) - 100});  // fits the idle block
    EXPECT_EQ(b.raw(), first);
    Tensor c = ops::scratch({1 << 19});  // the block is taken: a new one
    EXPECT_NE(c.raw(), first);
    Tensor big = ops::scratch({1 << 21});  // 8 MiB: far larger than anything idle
    EXPECT_EQ(big.numel(), 1 << 21);
  }
  EXPECT_EQ(cpu::scratch_cache_bytes(), (size_t{2} + 2 + 8) << 20);
  {
    Tensor small = ops::scratch({1 << 16});  // 256 KiB: below the cache threshold, plain malloc
    EXPECT_EQ(cpu::scratch_cache_bytes(), (size_t{2} + 2 + 8) << 20);
  }
  cpu::release_scratch_cache();
  EXPECT_EQ(cpu::scratch_cache_bytes(), 0u);
}
