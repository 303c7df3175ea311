// The training ops that run on CUDA so far (ops/ops_backward.h;
// backend/cuda/train_kernels.h) against the same ops on the CPU: dropout
// masks and AdamW updates bit for bit (the same float operations on both
// devices), the GELU backwards within float rounding of the CPU's scalar
// reference (both evaluate the derivative in double; libm and CUDA's
// tanh / erfc / exp may differ in the last double bits, and the result is
// rounded once to float). Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "core/device_memory.h"
#include "ops/ops_backward.h"
#include "ops/reference.h"
#include "support/test_env.h"
#include "train/adamw.h"

using namespace gpt2q;

namespace {

class CudaTrainOps : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda_device_usable(&why)) GTEST_SKIP() << "no usable CUDA device (" << why << "): CUDA tests not run";
  }
};

Tensor rnd(Shape shape, uint64_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::mt19937_64 g(seed);
  for (float& v : t.span<float>()) v = scale * (static_cast<float>((g() >> 40) * 0x1p-23) - 1.0f);
  return t;
}
Tensor gpu(const Tensor& t) { return to_device(t, Device::CUDA); }
Tensor host(const Tensor& t) { return to_device(t, Device::CPU); }

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = host(a), y = host(b);
  return x.nbytes() == y.nbytes() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

}  // namespace

TEST_F(CudaTrainOps, DropoutMasksAreTheCpusBitForBit) {
  for (int64_t n : {1, 1000, 4096 * 3 + 17})
    for (float p : {0.0f, 0.1f, 0.5f, 0.9f})
      for (uint64_t key : {uint64_t{0}, ops::dropout_key(42, 7, 1, 3)}) {
        Tensor cpu = rnd({n}, 5), dev = gpu(cpu);
        ops::dropout(cpu, p, key);
        ops::dropout(dev, p, key);
        EXPECT_TRUE(same_bits(dev, cpu)) << "n " << n << " p " << p << " key " << key;
      }
}

TEST_F(CudaTrainOps, GeluBackwardsWithinFloatRoundingOfTheReference) {
  const Tensor x = rnd({3, 1000}, 7, 6.0f), dy = rnd({3, 1000}, 8);
  for (int erf = 0; erf < 2; ++erf) {
    Tensor want = dy.clone(), got = gpu(dy);
    if (erf) {
      ops::reference::gelu_erf_backward(x, want);
      ops::gelu_erf_backward(gpu(x), got);
    } else {
      ops::reference::gelu_new_backward(x, want);
      ops::gelu_new_backward(gpu(x), got);
    }
    // One rounding of the same double value: at most 1 ulp apart
    // (2^-23 relative), 2^-22 allowing for a last-bit difference of the
    // double transcendental functions.
    const double worst = test::expect_close(host(got), want, 0x1p-22, erf ? "gelu_erf_backward" : "gelu_new_backward");
    std::printf("  %-24s worst rel. error %.3g\n", erf ? "gelu_erf_backward" : "gelu_new_backward", worst);
  }
}

TEST_F(CudaTrainOps, AdamWUpdatesAreTheCpusBitForBit) {
  train::AdamWOptions o;
  o.weight_decay = 0.01;
  for (int64_t n : {1, 9, 100003})
    for (double wd : {0.0, 0.01}) {
      Tensor p = rnd({n}, 11), m = Tensor::empty({n}, DType::F32), v = Tensor::empty({n}, DType::F32);
      Tensor dp = gpu(p), dm = gpu(m), dv = gpu(v);
      for (int64_t step = 1; step <= 5; ++step) {
        const Tensor g = rnd({n}, 200 + static_cast<uint64_t>(step), 0.3f);
        const backend::AdamWStep k = train::adamw_step_constants(step, 2e-5 * static_cast<double>(step), wd, o);
        ops::adamw_update(p, g, m, v, k);
        ops::adamw_update(dp, gpu(g), dm, dv, k);
      }
      EXPECT_TRUE(same_bits(dp, p)) << n << " params, weight decay " << wd;
      EXPECT_TRUE(same_bits(dm, m)) << n << " exp_avg, weight decay " << wd;
      EXPECT_TRUE(same_bits(dv, v)) << n << " exp_avg_sq, weight decay " << wd;
    }
}

TEST_F(CudaTrainOps, BackwardOpsWithoutCudaKernelsSayWhich) {
  // The rest of the training pass is CPU-only yet: one clear error each.
  const Tensor x = gpu(rnd({2, 8}, 1)), w = gpu(rnd({8}, 2)), dy = gpu(rnd({2, 8}, 3));
  Tensor dx = gpu(rnd({2, 8}, 4)), dw = gpu(rnd({8}, 5)), db = gpu(rnd({8}, 6));
  try {
    ops::layer_norm_backward(x, w, 1e-5f, dy, dx, dw, db);
    ADD_FAILURE() << "layer_norm_backward ran on CUDA tensors";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer_norm_backward: no implementation for device"), std::string::npos)
        << e.what();
  }
}
