// CUDA ops (ops.h on Device::CUDA tensors) against the CPU scalar reference
// (ops/reference.h) on random inputs of several shapes, odd ones included,
// plus device memory round trips and the errors the ops must still raise.
// Without a CUDA device every test skips and says why; a test that needs
// the absence of a device (CudaWithoutDevice) skips where one is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include <fmt/format.h>

#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/gemm.h"
#include "core/device_memory.h"
#include "ops/ops.h"
#include "ops/reference.h"
#include "support/test_env.h"

using namespace gpt2q;

namespace {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::device_available(&why)) GTEST_SKIP() << "no usable CUDA device (" << why << "): CUDA tests not run";
  }
};

Tensor random_tensor(Shape shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::mt19937_64 rng(seed);
  for (float& v : t.span<float>()) v = lo + (hi - lo) * static_cast<float>((rng() >> 40) * 0x1p-24);
  return t;
}

Tensor on_gpu(const Tensor& t) { return to_device(t, Device::CUDA); }
Tensor on_host(const Tensor& t) { return to_device(t, Device::CPU); }

// A device output buffer full of NaN: an element the op fails to write shows.
Tensor poisoned_gpu(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F32);
  for (float& v : t.span<float>()) v = NAN;
  return on_gpu(t);
}

// The support check (test_env.h) on the device output, with the worst
// relative error printed for docs/cuda.md.
void expect_close(const Tensor& got_any, const Tensor& want, double rtol, const std::string& what) {
  const double worst = test::expect_close(on_host(got_any), want, rtol, what);
  std::printf("  %-40s worst rel. error %.3g\n", what.c_str(), worst);
}

void expect_bitwise_equal(const Tensor& got_any, const Tensor& want, const std::string& what) {
  const Tensor got = on_host(got_any);
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what;
}

// After the last test: with the thread's cuBLASLt context released, every
// device block the tests allocated has been freed (a tensor or scratch
// leaked by an op shows here, and under compute-sanitizer's leak check).
class NothingLeftOnTheDevice : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!cuda::device_available(nullptr)) return;
    cuda::release_gemm_context();
    device_synchronize(Device::CUDA);
    EXPECT_EQ(device_memory_stats(Device::CUDA).used, 0u) << "device bytes still allocated after the tests";
    release_cached_device_memory(Device::CUDA);
  }
};
[[maybe_unused]] ::testing::Environment* const leak_check =
    ::testing::AddGlobalTestEnvironment(new NothingLeftOnTheDevice);

Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t cols, int64_t first_valid = 0) {
  Tensor m = Tensor::empty({static_cast<int64_t>(lengths.size()), cols}, DType::U8);
  for (size_t b = 0; b < lengths.size(); ++b)
    for (int64_t j = first_valid; j < lengths[b]; ++j) m.data<uint8_t>()[b * cols + j] = 1;
  return m;
}

}  // namespace

TEST_F(CudaOps, DeviceMemoryRoundTripsAndViews) {
  std::printf("  device: %s\n", cuda::device_description().c_str());
  Tensor zeros = on_host(Tensor::empty({1000, 3}, DType::F32, Device::CUDA));
  for (float v : zeros.span<float>()) ASSERT_EQ(v, 0.0f);

  Tensor x = random_tensor({37, 11}, 1);
  Tensor g = on_gpu(x);
  EXPECT_EQ(g.device(), Device::CUDA);
  EXPECT_EQ(to_device(g, Device::CUDA).raw(), g.raw());  // already there: no copy
  expect_bitwise_equal(g, x, "host -> device -> host");
  expect_bitwise_equal(g.clone(), x, "device clone");
  expect_bitwise_equal(g.slice_rows(5, 9), x.slice_rows(5, 9).clone(), "device slice");
  expect_bitwise_equal(on_gpu(Tensor::from_vector<int64_t>({-3, 1LL << 40}, {2})),
                       Tensor::from_vector<int64_t>({-3, 1LL << 40}, {2}), "I64 round trip");
  EXPECT_THROW((void)g.data<float>(), Error);  // no host access to device memory
  Tensor empty = Tensor::empty({0, 4}, DType::F32, Device::CUDA);
  EXPECT_EQ(on_host(empty).numel(), 0);
  // Scratch tensors on the device are device memory.
  EXPECT_EQ(ops::scratch({4, 4}, DType::F32, Device::CUDA).device(), Device::CUDA);
}

TEST_F(CudaOps, LinearMatchesReference) {
  // TF32 (cuBLAS's tensor-op fp32 mode) would miss 1e-5 by two orders of magnitude.
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {13, 64, 96}, {128, 768, 200}, {3, 1, 4}, {257, 768, 2304},
                               {33, 3072, 768}}) {
    Tensor x = random_tensor({rows, in}, 2), w = random_tensor({in, out}, 3), b = random_tensor({out}, 4);
    for (bool with_bias : {true, false}) {
      Tensor yr = Tensor::empty({rows, out}, DType::F32);
      ops::reference::linear(x, w, with_bias ? b : Tensor(), yr);
      Tensor y = poisoned_gpu({rows, out});
      ops::linear(on_gpu(x), on_gpu(w), with_bias ? on_gpu(b) : Tensor(), y);
      expect_close(y, yr, 1e-5,
                   fmt::format("linear {}x{}x{}{}", rows, in, out, with_bias ? " +bias" : ""));
    }
  }
  // Batched [2, 3, 8] input.
  Tensor x = random_tensor({2, 3, 8}, 5), w = random_tensor({8, 6}, 6), b = random_tensor({6}, 7);
  Tensor yr = Tensor::empty({2, 3, 6}, DType::F32), y = poisoned_gpu({2, 3, 6});
  ops::reference::linear(x, w, b, yr);
  ops::linear(on_gpu(x), on_gpu(w), on_gpu(b), y);
  expect_close(y, yr, 1e-5, "linear 3-D");
}

TEST_F(CudaOps, MatmulNtMatchesReference) {
  for (auto [m, k, n] : {std::tuple{17, 48, 301}, {1, 48, 301}, {64, 768, 129}, {4, 768, 50257}}) {
    Tensor a = random_tensor({m, k}, 8), b = random_tensor({n, k}, 9);
    Tensor cr = Tensor::empty({m, n}, DType::F32), c = poisoned_gpu({m, n});
    ops::reference::matmul_nt(a, b, cr);
    ops::matmul_nt(on_gpu(a), on_gpu(b), c);
    expect_close(c, cr, 1e-5, fmt::format("matmul_nt {}x{}x{}", m, k, n));
  }
}

TEST_F(CudaOps, LayerNormMatchesReferenceEvenWithLargeMean) {
  for (auto [rows, cols] : {std::pair{9, 771}, {64, 768}, {3, 1}, {2, 5000}}) {
    for (float offset : {0.0f, 300.0f}) {
      Tensor x = random_tensor({rows, cols}, 10, offset - 2.0f, offset + 2.0f);
      Tensor w = random_tensor({cols}, 11, 0.5f, 1.5f), b = random_tensor({cols}, 12);
      Tensor yr = Tensor::empty({rows, cols}, DType::F32), y = poisoned_gpu({rows, cols});
      ops::reference::layer_norm(x, w, b, 1e-5f, yr);
      ops::layer_norm(on_gpu(x), on_gpu(w), on_gpu(b), 1e-5f, y);
      expect_close(y, yr, 1e-5, fmt::format("layer_norm {}x{} offset {}", rows, cols, offset));
    }
  }
  Tensor x = random_tensor({4, 32}, 13), w = random_tensor({32}, 14), b = random_tensor({32}, 15);
  Tensor yr = Tensor::empty({4, 32}, DType::F32);
  ops::reference::layer_norm(x, w, b, 1e-5f, yr);
  Tensor in_place = on_gpu(x);
  ops::layer_norm(in_place, on_gpu(w), on_gpu(b), 1e-5f, in_place);
  expect_close(in_place, yr, 1e-5, "layer_norm in place");
}

TEST_F(CudaOps, GeluBothFormsMatchReference) {
  // Saturation on both sides, zero, a denormal-sized input, and an odd length
  // longer than one grid-stride pass would need.
  Tensor x = random_tensor({100003}, 16, -12.0f, 12.0f);
  float* xv = x.data<float>();
  xv[0] = 0.0f;
  xv[1] = -1e-30f;
  xv[2] = 90.0f;
  xv[3] = -90.0f;
  xv[4] = -5.5f;
  for (bool erf_form : {false, true}) {
    Tensor yr = x.clone(), y = on_gpu(x);
    if (erf_form) {
      ops::reference::gelu_erf(yr);
      ops::gelu_erf(y);
    } else {
      ops::reference::gelu_new(yr);
      ops::gelu_new(y);
    }
    const Tensor g = on_host(y);
    size_t bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      // Relative to |x|, as the CPU tests judge it: gelu(x) is x times a
      // factor in [0, 1].
      const double err = std::fabs(static_cast<double>(g.data<float>()[i]) - yr.data<float>()[i]);
      worst = std::max(worst, err / (std::fabs(xv[i]) + 1e-30));
      if (!(err <= 1e-6 * std::fabs(xv[i]) + 1e-30) && ++bad <= 5)
        ADD_FAILURE() << (erf_form ? "gelu_erf" : "gelu_new") << " x = " << xv[i] << ": got " << g.data<float>()[i]
                      << " want " << yr.data<float>()[i];
    }
    EXPECT_EQ(bad, 0u);
    std::printf("  %-40s worst error / |x| %.3g\n", erf_form ? "gelu_erf" : "gelu_new", worst);
  }
}

TEST_F(CudaOps, SoftmaxMatchesReferenceAndIgnoresMinusInf) {
  Tensor x = random_tensor({6, 37}, 17, -20.0f, 20.0f);
  for (int c = 30; c < 37; ++c) x.data<float>()[2 * 37 + c] = -INFINITY;
  Tensor yr = x.clone(), y = on_gpu(x);
  ops::reference::softmax_lastdim(yr);
  ops::softmax_lastdim(y);
  expect_close(y, yr, 1e-5, "softmax 6x37");
  const Tensor g = on_host(y);
  for (int c = 30; c < 37; ++c) EXPECT_EQ(g.data<float>()[2 * 37 + c], 0.0f);
  for (int r = 0; r < 6; ++r) {
    double s = 0;
    for (int c = 0; c < 37; ++c) s += g.data<float>()[r * 37 + c];
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
  // Logits-sized rows.
  Tensor big = random_tensor({3, 50257}, 18, -15.0f, 15.0f);
  Tensor big_r = big.clone(), big_g = on_gpu(big);
  ops::reference::softmax_lastdim(big_r);
  ops::softmax_lastdim(big_g);
  expect_close(big_g, big_r, 1e-5, "softmax 3x50257");
}

TEST_F(CudaOps, AddAndEmbeddingAreExact) {
  Tensor x = random_tensor({1001, 7}, 19), y = random_tensor({1001, 7}, 20);
  Tensor ar = x.clone(), a = on_gpu(x);
  ops::reference::add_inplace(ar, y);
  ops::add_inplace(a, on_gpu(y));
  expect_bitwise_equal(a, ar, "add");

  Tensor wte = random_tensor({11, 6}, 21), wpe = random_tensor({8, 6}, 22);
  Tensor ids = Tensor::from_vector<int32_t>({3, 0, 10, 3, 7}, {5});
  Tensor pos = Tensor::from_vector<int64_t>({0, 1, 2, 7, 7}, {5});
  Tensor er = Tensor::empty({5, 6}, DType::F32);
  ops::reference::embedding(ids, pos, wte, wpe, er);
  const Tensor wte_g = on_gpu(wte), wpe_g = on_gpu(wpe);
  Tensor e = poisoned_gpu({5, 6});
  ops::embedding(ids, pos, wte_g, wpe_g, e);  // ids from the host
  expect_bitwise_equal(e, er, "embedding, host ids");
  Tensor e2 = poisoned_gpu({5, 6});
  ops::embedding(on_gpu(ids), on_gpu(pos), wte_g, wpe_g, e2);  // ids already on the device
  expect_bitwise_equal(e2, er, "embedding, device ids");
}

TEST_F(CudaOps, OutOfRangeEmbeddingIndicesAreErrorsNotDeviceFaults) {
  Tensor wte = on_gpu(random_tensor({11, 6}, 23)), wpe = on_gpu(random_tensor({8, 6}, 24));
  Tensor one = Tensor::empty({1, 6}, DType::F32, Device::CUDA);
  const Tensor id0 = Tensor::from_vector<int32_t>({0}, {1}), pos0 = Tensor::from_vector<int64_t>({0}, {1});
  for (bool device_ids : {false, true}) {
    auto place = [&](const Tensor& t) { return device_ids ? on_gpu(t) : t; };
    for (int32_t bad_id : {11, -1}) {
      try {
        ops::embedding(place(Tensor::from_vector<int32_t>({bad_id}, {1})), place(pos0), wte, wpe, one);
        ADD_FAILURE() << "id " << bad_id << " accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("token id"), std::string::npos) << e.what();
      }
    }
    for (int64_t bad_pos : {int64_t{8}, int64_t{-2}}) {
      try {
        ops::embedding(place(id0), place(Tensor::from_vector<int64_t>({bad_pos}, {1})), wte, wpe, one);
        ADD_FAILURE() << "position " << bad_pos << " accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("position"), std::string::npos) << e.what();
      }
    }
  }
  // The device is still healthy: no fault happened behind the Errors.
  ops::embedding(id0, pos0, wte, wpe, one);
  cuda::synchronize();
  EXPECT_EQ(on_host(one).numel(), 6);
}

TEST_F(CudaOps, AttentionMatchesReferenceWithPadding) {
  // Short and long sequences (kv_len over the kernel's 128-key tile), head
  // sizes 8, 12, 32, 64, and masks that pad the end of rows.
  for (auto [B, T, C, H] : {std::tuple{3, 19, 32, 4}, {2, 3, 24, 2}, {1, 40, 48, 4}, {2, 130, 128, 4},
                            {1, 300, 128, 2}, {2, 64, 768, 12}}) {
    Tensor qkv = random_tensor({B, T, 3 * C}, 100 + T, -2.0f, 2.0f);
    std::vector<int64_t> lengths;
    for (int b = 0; b < B; ++b) lengths.push_back(std::max<int64_t>(1, T - 5 * b));
    for (bool masked : {false, true}) {
      Tensor mask = masked ? padding_mask(lengths, T) : Tensor();
      const float scale = 1.0f / std::sqrt(static_cast<float>(C / H));
      Tensor ref = Tensor::empty({B, T, C}, DType::F32), out = poisoned_gpu({B, T, C});
      ops::reference::causal_self_attention(qkv, mask, H, scale, ref);
      ops::causal_self_attention(on_gpu(qkv), masked ? on_gpu(mask) : Tensor(), H, scale, out);
      expect_close(out, ref, 2e-6, fmt::format("attention B{} T{} C{} H{}{}", B, T, C, H, masked ? " mask" : ""));
    }
  }
}

TEST_F(CudaOps, AttentionRowThatSeesNoKeyAveragesAllValues) {
  // Key 0 masked: query 0 sees no key at all, and the reference (like HF's
  // eager path) averages every value; later queries see keys 1.. .
  const int64_t B = 2, T = 9, C = 16, H = 2;
  Tensor qkv = random_tensor({B, T, 3 * C}, 25, -2.0f, 2.0f);
  Tensor mask = padding_mask({T, T}, T, /*first_valid=*/1);
  Tensor ref = Tensor::empty({B, T, C}, DType::F32), out = poisoned_gpu({B, T, C});
  ops::reference::causal_self_attention(qkv, mask, H, 0.5f, ref);
  ops::causal_self_attention(on_gpu(qkv), on_gpu(mask), H, 0.5f, out);
  expect_close(out, ref, 2e-6, "attention, no visible key");
}

TEST_F(CudaOps, CachedAttentionMatchesReference) {
  // Prefill P positions, then steps of 1 and 4, against the reference doing
  // the same on host caches: outputs within rounding, caches exactly equal.
  const int64_t B = 2, T = 23, C = 32, H = 4, hd = C / H, cap = 30, P = 13;
  Tensor qkv = random_tensor({B, T, 3 * C}, 26, -2.0f, 2.0f);
  Tensor mask = padding_mask({T, T - 4}, cap);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Tensor ck_ref = Tensor::empty({B, H, cap, hd}, DType::F32), cv_ref = Tensor::empty({B, H, cap, hd}, DType::F32);
  Tensor ck = on_gpu(ck_ref), cv = on_gpu(cv_ref), mask_g = on_gpu(mask);
  int64_t past = 0;
  for (int64_t step : {P, int64_t{1}, int64_t{4}, int64_t{1}, int64_t{4}}) {
    // Rows [past, past + step) of every batch row.
    Tensor chunk = Tensor::empty({B, step, 3 * C}, DType::F32);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(chunk.data<float>() + b * step * 3 * C, qkv.data<float>() + (b * T + past) * 3 * C,
                  sizeof(float) * step * 3 * C);
    Tensor ref = Tensor::empty({B, step, C}, DType::F32), out = poisoned_gpu({B, step, C});
    ops::reference::causal_self_attention_cached(chunk, ck_ref, cv_ref, past, mask, H, scale, ref);
    ops::causal_self_attention_cached(on_gpu(chunk), ck, cv, past, mask_g, H, scale, out);
    expect_close(out, ref, 2e-6, fmt::format("cached attention past {} + {}", past, step));
    expect_bitwise_equal(ck, ck_ref, "k cache");
    expect_bitwise_equal(cv, cv_ref, "v cache");
    past += step;
  }
}

TEST_F(CudaOps, ArgumentErrorsAreCaughtBeforeAnyKernel) {
  Tensor x = on_gpu(random_tensor({4, 8}, 27)), w = on_gpu(random_tensor({7, 3}, 28));
  Tensor y = Tensor::empty({4, 3}, DType::F32, Device::CUDA);
  EXPECT_THROW(ops::linear(x, w, Tensor(), y), Error);  // 8 != 7
  Tensor w_host = random_tensor({8, 3}, 29);
  EXPECT_THROW(ops::linear(x, w_host, Tensor(), y), Error);  // mixed devices
  Tensor xi = Tensor::empty({4, 8}, DType::I32, Device::CUDA);
  EXPECT_THROW(ops::gelu_new(xi), Error);  // dtype
  Tensor z = on_gpu(random_tensor({4, 9}, 30));
  EXPECT_THROW(ops::add_inplace(x, z), Error);  // shapes
  Tensor qkv = on_gpu(random_tensor({1, 4, 30}, 31)), out = Tensor::empty({1, 4, 10}, DType::F32, Device::CUDA);
  EXPECT_THROW(ops::causal_self_attention(qkv, Tensor(), 3, 1.0f, out), Error);  // 3 does not divide 10
  Tensor ck = Tensor::empty({1, 2, 3, 5}, DType::F32, Device::CUDA), cv = ck.clone();
  EXPECT_THROW(ops::causal_self_attention_cached(qkv, ck, cv, 0, Tensor(), 2, 1.0f, out), Error);  // 4 > capacity 3
  // The scalar reference runs on the host only.
  try {
    ops::reference::add_inplace(x, x);
    ADD_FAILURE() << "reference accepted device tensors";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CPU tensors only"), std::string::npos) << e.what();
  }
  cuda::synchronize();  // and nothing was launched that faulted
}

// On a machine without a GPU the CUDA build must still fail cleanly.
TEST(CudaWithoutDevice, DeviceAllocationIsAClearError) {
  std::string why;
  if (cuda::device_available(&why)) GTEST_SKIP() << "a CUDA device is present; this test is for machines without one";
  EXPECT_TRUE(cuda_built());
  try {
    (void)Tensor::empty({4}, DType::F32, Device::CUDA);
    ADD_FAILURE() << "allocated CUDA memory without a device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA: no usable device"), std::string::npos) << e.what();
  }
  EXPECT_THROW(to_device(Tensor::from_vector<float>({1, 2}, {2}), Device::CUDA), Error);
}
