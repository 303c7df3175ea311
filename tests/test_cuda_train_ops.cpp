// The training ops that run on CUDA so far (ops/ops_backward.h;
// backend/cuda/train_kernels.h) against the same ops on the CPU: dropout
// masks and AdamW updates bit for bit (the same float operations on both
// devices), LayerNorm's backward within 1e-5 of the scalar reference (both
// in double, other summation orders), the linear backward (cuBLASLt fp32)
// within the forward's fp32 tolerance, the GELU backwards within float
// rounding of the CPU's scalar
// reference (both evaluate the derivative in double; libm and CUDA's
// tanh / erfc / exp may differ in the last double bits, and the result is
// rounded once to float). Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/device_memory.h"
#include "core/half.h"
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

// t with every value rounded to bf16 (nearest even), as the bf16 products round their operands.
Tensor rounded(const Tensor& t) {
  Tensor r = t.clone();
  for (float& v : r.span<float>()) v = bf16_to_float(float_to_bf16(v));
  return r;
}

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

TEST_F(CudaTrainOps, LayerNormBackwardMatchesTheReference) {
  // Both in double from the same float inputs, summed in other orders: the
  // float results agree to a few ulp of the largest value. A large common
  // offset (300) checks the two-pass statistics; 2,000 rows make 32 chunks
  // of the column sums, 17,000 rows the most (256) with a short last chunk,
  // and 771 / 33 columns a partial column tile.
  for (auto [rows, cols, offset] : {std::tuple<int64_t, int64_t, float>{1, 768, 0.0f}, {7, 771, 300.0f},
                                    {2000, 64, 0.0f}, {17000, 33, 1.0f}}) {
    Tensor x = rnd({rows, cols}, 21, 2.0f);
    for (float& v : x.span<float>()) v += offset;
    const Tensor w = rnd({cols}, 22), dy = rnd({rows, cols}, 23);
    Tensor dx = rnd({rows, cols}, 24), dw = rnd({cols}, 25), db = rnd({cols}, 26);
    Tensor gdx = gpu(dx), gdw = gpu(dw), gdb = gpu(db);
    ops::reference::layer_norm_backward(x, w, 1e-5f, dy, dx, dw, db);
    ops::layer_norm_backward(gpu(x), gpu(w), 1e-5f, gpu(dy), gdx, gdw, gdb);
    for (const auto& [got, want, what] : {std::tuple{&gdx, &dx, "dx"}, {&gdw, &dw, "dw"}, {&gdb, &db, "db"}}) {
      const std::string name = std::string("layer_norm_backward ") + what + " " + std::to_string(rows) + "x" +
                               std::to_string(cols);
      const double worst = test::expect_close(host(*got), *want, 1e-5, name);
      std::printf("  %-40s worst rel. error %.3g\n", name.c_str(), worst);
    }
  }
}

TEST_F(CudaTrainOps, LinearBackwardMatchesTheReference) {
  // cuBLASLt fp32 (no TF32) against the scalar reference's double sums: the
  // error grows like sqrt(k) (k = out for dx, rows for dw), as the forward's
  // fp32 tolerance (test_cuda_backend_ops): 1e-5 · sqrt(k / 768), at least 1e-5.
  for (auto [rows, in, out] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 8, 5}, {37, 64, 96}, {1500, 768, 300}, {17000, 16, 40}}) {
    const Tensor x = rnd({rows, in}, 31), w = rnd({in, out}, 32, 0.05f), dy = rnd({rows, out}, 33);
    for (bool with_dx : {true, false}) {
      Tensor dx = with_dx ? rnd({rows, in}, 34) : Tensor(), dw = rnd({in, out}, 35), db = rnd({out}, 36);
      Tensor gdx = with_dx ? gpu(dx) : Tensor(), gdw = gpu(dw), gdb = gpu(db);
      ops::reference::linear_backward(x, w, dy, dx, dw, db);
      ops::linear_backward(gpu(x), gpu(w), gpu(dy), gdx, gdw, gdb);
      auto tol = [](int64_t k) { return 1e-5 * std::sqrt(std::max(1.0, static_cast<double>(k) / 768.0)); };
      const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out);
      if (with_dx) test::expect_close(host(gdx), dx, tol(out), "linear_backward dx " + shape);
      const double worst = test::expect_close(host(gdw), dw, tol(rows), "linear_backward dw " + shape);
      test::expect_close(host(gdb), db, tol(rows), "linear_backward db " + shape);
      std::printf("  linear_backward %-20s dw worst rel. error %.3g\n", shape.c_str(), worst);
    }
  }
}

TEST_F(CudaTrainOps, Bf16ProductsRoundTheirOperandsToBf16) {
  // Under ops::Bf16ProductsScope both operands of every product are rounded
  // to bf16 (nearest even) and multiplied with fp32 sums: each product of
  // two bf16 values is exact in fp32, so the result is the double reference
  // of the rounded operands within fp32 summation (the fp32 tolerance
  // above). TF32 products (10 mantissa bits, not 7) would miss it by ~1e-3.
  // The bias gradient is no product: it sums the unrounded dy.
  for (auto [rows, in, out] : {std::tuple<int64_t, int64_t, int64_t>{37, 64, 96}, {1500, 768, 300}}) {
    const Tensor x = rnd({rows, in}, 41), w = rnd({in, out}, 42, 0.05f), dy = rnd({rows, out}, 43);
    Tensor dx = Tensor::empty({rows, in}, DType::F32), dw = Tensor::empty({in, out}, DType::F32);
    Tensor db = Tensor::empty({out}, DType::F32), db_unrounded = db.clone();
    Tensor gdx = gpu(dx), gdw = gpu(dw), gdb = gpu(db);
    ops::reference::linear_backward(rounded(x), rounded(w), rounded(dy), dx, dw, db);
    Tensor dx_unused = Tensor::empty({rows, in}, DType::F32), dw_unused = Tensor::empty({in, out}, DType::F32);
    ops::reference::linear_backward(x, w, dy, dx_unused, dw_unused, db_unrounded);
    {
      const ops::Bf16ProductsScope products(true);
      ops::linear_backward(gpu(x), gpu(w), gpu(dy), gdx, gdw, gdb);
    }
    auto tol = [](int64_t k) { return 1e-5 * std::sqrt(std::max(1.0, static_cast<double>(k) / 768.0)); };
    const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out);
    const double wx = test::expect_close(host(gdx), dx, tol(out), "bf16 linear_backward dx " + shape);
    const double ww = test::expect_close(host(gdw), dw, tol(rows), "bf16 linear_backward dw " + shape);
    test::expect_close(host(gdb), db_unrounded, tol(rows), "bf16 linear_backward db " + shape);
    std::printf("  bf16 products %-20s dx %.3g dw %.3g of the rounded operands' reference\n", shape.c_str(), wx, ww);
  }
}

TEST_F(CudaTrainOps, EmbeddingBackwardIsTheCpusBitForBit) {
  // Repeated ids and positions (the tied wte of an LM batch): each table row
  // adds its rows in ascending order on both devices.
  const int64_t rows = 300, cols = 70;
  std::vector<int32_t> id(rows);
  std::vector<int64_t> pos(rows);
  for (int64_t r = 0; r < rows; ++r) {
    id[r] = static_cast<int32_t>((r * 7919) % 53);
    pos[r] = r % 16;
  }
  const Tensor ids = Tensor::from_vector(id, {rows}), positions = Tensor::from_vector(pos, {rows});
  const Tensor dout = rnd({rows, cols}, 41);
  Tensor dwte = rnd({60, cols}, 42), dwpe = rnd({20, cols}, 43);
  Tensor gwte = gpu(dwte), gwpe = gpu(dwpe);
  ops::embedding_backward(ids, positions, dout, dwte, dwpe);
  ops::embedding_backward(ids, positions, gpu(dout), gwte, gwpe);
  EXPECT_TRUE(same_bits(gwte, dwte));
  EXPECT_TRUE(same_bits(gwpe, dwpe));
}

TEST_F(CudaTrainOps, CrossEntropyMatchesTheReference) {
  const int64_t rows = 9, cols = 50257;
  const Tensor logits = rnd({rows, cols}, 51, 8.0f);
  const Tensor targets = Tensor::from_vector(std::vector<int32_t>{3, -1, 50256, 0, 7, -1, 100, 2, 49999}, {rows});
  Tensor want = Tensor::empty({rows, cols}, DType::F32), got = gpu(rnd({rows, cols}, 52));
  const double loss_cpu = ops::reference::cross_entropy(logits, targets, 0.5f, want);
  const double loss_gpu = ops::cross_entropy(gpu(logits), targets, 0.5f, got);
  EXPECT_NEAR(loss_gpu, loss_cpu, 1e-12 * std::fabs(loss_cpu));
  const double worst = test::expect_close(host(got), want, 1e-6, "cross_entropy dlogits");
  std::printf("  cross_entropy loss %.15g / %.15g, dlogits worst rel. error %.3g\n", loss_gpu, loss_cpu, worst);
  // In place (dlogits aliasing logits), as the trainer calls it.
  Tensor inplace = gpu(logits);
  EXPECT_NEAR(ops::cross_entropy(inplace, targets, 0.5f, inplace), loss_cpu, 1e-12 * std::fabs(loss_cpu));
  test::expect_close(host(inplace), want, 1e-6, "cross_entropy in place");
  // The per-row form leaves the losses on the device (no wait).
  Tensor rows_cpu = Tensor::empty({rows}, DType::F64), rows_gpu = Tensor::empty({rows}, DType::F64, Device::CUDA);
  Tensor d_cpu = Tensor::empty({rows, cols}, DType::F32), d_gpu = gpu(d_cpu);
  ops::reference::cross_entropy_rows(logits, targets, 0.5f, d_cpu, rows_cpu);
  ops::cross_entropy_rows(gpu(logits), targets, 0.5f, d_gpu, rows_gpu);
  const Tensor back = host(rows_gpu);
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_NEAR(back.data<double>()[r], rows_cpu.data<double>()[r], 1e-12 * std::fabs(rows_cpu.data<double>()[r]))
        << "row " << r;
}

TEST_F(CudaTrainOps, MatmulNtBackwardMatchesTheReference) {
  // The heads' backward (logits = h · wteᵀ, classifier scores): cuBLASLt fp32
  // against double sums, the forward's fp32 tolerance in sqrt(k).
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{16, 768, 4}, {300, 64, 1000}}) {
    const Tensor a = rnd({m, k}, 61), b = rnd({n, k}, 62, 0.05f), dc = rnd({m, n}, 63);
    Tensor da = Tensor::empty({m, k}, DType::F32), db = rnd({n, k}, 64);
    Tensor gda = gpu(rnd({m, k}, 65)), gdb = gpu(db);
    ops::reference::matmul_nt_backward(a, b, dc, da, db);
    ops::matmul_nt_backward(gpu(a), gpu(b), gpu(dc), gda, gdb);
    auto tol = [](int64_t kk) { return 1e-5 * std::sqrt(std::max(1.0, static_cast<double>(kk) / 768.0)); };
    test::expect_close(host(gda), da, tol(n), "matmul_nt_backward da");
    test::expect_close(host(gdb), db, tol(m), "matmul_nt_backward db");
  }
}

TEST_F(CudaTrainOps, AttentionForwardAndBackwardMatchTheReference) {
  // Padding (a key mask), dropout on the probabilities, and a row that sees
  // no key (key 0 masked: it averages every value, as the reference), with
  // each CUDA kernel family against the reference's double arithmetic:
  //   - the row kernels (GPT2Q_TRAIN_ATTENTION=rows): double sums as the
  //     reference, exp differs in the last bits: within 1e-6;
  //   - the batched ones (the default), exact fp32 products of hd or T terms
  //     and an fp32 softmax: ~1e-7 relative per sum, within 1e-5;
  //   - the batched ones under bf16 products (ops::Bf16ProductsScope): each
  //     operand rounded to bf16 (2^-9 relative), sums of 16-37 terms and two
  //     products in a row: within 3e-2 of the mean magnitude.
  // 37 and 300 keys: the batched softmax's warp kernels with 2 and 16 keys
  // per lane (bf16 products at 37 keys only: its bound is for short sums).
  for (const int64_t T : {int64_t{37}, int64_t{300}}) {
    const int64_t B = 2, H = 3, hd = 16, C = H * hd;
    const Tensor qkv = rnd({B, T, 3 * C}, 71, 2.0f), dout = rnd({B, T, C}, 72);
    Tensor mask = Tensor::empty({B, T}, DType::U8);
    for (int64_t t = 0; t < T; ++t) {
      mask.data<uint8_t>()[t] = t < 30 ? 1 : 0;
      mask.data<uint8_t>()[T + t] = t == 0 ? 0 : 1;
    }
    struct Family {
      const char* name;
      bool rows, bf16;
      double tol;
    };
    for (const Family f : {Family{"rows", true, false, 1e-6}, Family{"batched", false, false, 1e-5},
                           Family{"batched bf16", false, true, 3e-2}}) {
      if (f.rows) {
        setenv("GPT2Q_TRAIN_ATTENTION", "rows", 1);
      } else {
        unsetenv("GPT2Q_TRAIN_ATTENTION");
      }
      if (f.bf16 && T != 37) continue;
      const ops::Bf16ProductsScope products(f.bf16);
      for (float p : {0.0f, 0.2f}) {
        const ops::AttentionTrainParams params{H, 0.25f, p, ops::dropout_key(9, 3, 0, 4)};
        Tensor probs = Tensor::empty({B, H, T, T}, DType::F32), dropped, out = Tensor::empty({B, T, C}, DType::F32);
        if (p > 0) dropped = Tensor::empty({B, H, T, T}, DType::F32);
        Tensor gprobs = gpu(probs), gdropped = p > 0 ? gpu(dropped) : Tensor(), gout = gpu(out);
        ops::reference::causal_self_attention_train(qkv, mask, params, probs, dropped, out);
        ops::causal_self_attention_train(gpu(qkv), gpu(mask), params, gprobs, gdropped, gout);
        const std::string what = std::string(f.name) + (p > 0 ? " with dropout" : "");
        test::expect_close(host(gprobs), probs, f.tol, "attention probs " + what);
        if (p > 0) test::expect_close(host(gdropped), dropped, f.tol, "attention dropped " + what);
        const double worst_out = test::expect_close(host(gout), out, f.tol, "attention out " + what);
        Tensor dqkv = Tensor::empty(qkv.shape(), DType::F32), gdqkv = gpu(rnd(qkv.shape(), 73));
        ops::reference::causal_self_attention_backward(qkv, mask, probs, dropped, out, params, dout, dqkv);
        // Each family's backward reads its own forward's probabilities.
        ops::causal_self_attention_backward(gpu(qkv), gpu(mask), gprobs, p > 0 ? gdropped : Tensor(), gout, params,
                                            gpu(dout), gdqkv);
        const double worst = test::expect_close(host(gdqkv), dqkv, f.tol, "attention dqkv " + what);
        if (p > 0) {
          // Without a kept `dropped` (the trainer's way on CUDA): the same bits.
          Tensor probs2 = gpu(probs), none, out2 = gpu(out), dqkv2 = gpu(rnd(qkv.shape(), 74));
          ops::causal_self_attention_train(gpu(qkv), gpu(mask), params, probs2, none, out2);
          ops::causal_self_attention_backward(gpu(qkv), gpu(mask), probs2, Tensor(), out2, params, gpu(dout), dqkv2);
          EXPECT_TRUE(same_bits(out2, gout)) << what;
          EXPECT_TRUE(same_bits(dqkv2, gdqkv)) << what;
        }
        std::printf("  attention %s, %lld keys: out worst rel. error %.3g, dqkv %.3g\n", what.c_str(),
                    static_cast<long long>(T), worst_out, worst);
      }
    }
  }
  unsetenv("GPT2Q_TRAIN_ATTENTION");
}

TEST_F(CudaTrainOps, FlashAttentionMatchesTheReferenceOfItsBf16Operands) {
  // bf16 training's attention (backend/cuda/attention_flash_train.cu) keeps
  // only each row's log-sum-exp and recomputes the probabilities in the
  // backward. The reference is given q, k, v and dout rounded to bf16, as
  // the kernels round them; what remains is P (and Pd) and dS rounded to
  // bf16 as operands of the second products (2^-9 relative each) and fp32
  // sums of up to T terms. out: within 1e-2 of the mean magnitude element by
  // element. dqkv: dS = P ⊙ (dP − D) cancels where dP ≈ D, so its rounding
  // is relative to the terms, not to the difference, and single elements of
  // dK stray by a few per cent of their size; bounded as a whole (relative
  // L2 error <= 1e-2; the dev/cuda harness measured 2.2e-3) and element by
  // element at 0.1 of the mean magnitude. Right padding (30 of T keys) and
  // dropout, with the CPU's masks; 37 and 300 keys (one partial tile; five,
  // and dK/dV tiles of padding keys only). The backward sums in a fixed
  // order: a second run gives the same bits.
  const ops::Bf16ProductsScope products(true);
  for (const int64_t T : {int64_t{37}, int64_t{300}}) {
    const int64_t B = 2, H = 3, hd = 64, C = H * hd;
    ASSERT_EQ(ops::attention_train_saved_shape(Device::CUDA, B, H, T, hd), (Shape{B, H, T}));
    const Tensor qkv = rnd({B, T, 3 * C}, 81, 2.0f), dout = rnd({B, T, C}, 82);
    Tensor mask = Tensor::empty({B, T}, DType::U8);
    for (int64_t t = 0; t < T; ++t) {
      mask.data<uint8_t>()[t] = t < 30 ? 1 : 0;
      mask.data<uint8_t>()[T + t] = 1;
    }
    for (float p : {0.0f, 0.1f}) {
      const ops::AttentionTrainParams params{H, 0.125f, p, ops::dropout_key(5, 2, 0, 7)};
      Tensor probs = Tensor::empty({B, H, T, T}, DType::F32), dropped, out = Tensor::empty({B, T, C}, DType::F32);
      if (p > 0) dropped = Tensor::empty({B, H, T, T}, DType::F32);
      ops::reference::causal_self_attention_train(rounded(qkv), mask, params, probs, dropped, out);
      Tensor dqkv = Tensor::empty(qkv.shape(), DType::F32);
      ops::reference::causal_self_attention_backward(rounded(qkv), mask, probs, dropped, out, params,
                                                      rounded(dout), dqkv);

      Tensor lse = gpu(Tensor::empty({B, H, T}, DType::F32)), none, gout = gpu(rnd({B, T, C}, 83));
      ops::causal_self_attention_train(gpu(qkv), gpu(mask), params, lse, none, gout);
      const std::string what = std::to_string(T) + " keys" + (p > 0 ? ", dropout" : "");
      const double worst_out = test::expect_close(host(gout), out, 1e-2, "flash attention out, " + what);
      Tensor gdqkv = gpu(rnd(qkv.shape(), 84)), again = gpu(rnd(qkv.shape(), 85));
      ops::causal_self_attention_backward(gpu(qkv), gpu(mask), lse, Tensor(), gout, params, gpu(dout), gdqkv);
      const Tensor got = host(gdqkv);
      double num = 0, den = 0, mean = 0, worst = 0;
      const auto g = got.span<const float>(), w = dqkv.span<const float>();
      for (size_t i = 0; i < g.size(); ++i) {
        num += (double{g[i]} - w[i]) * (double{g[i]} - w[i]);
        den += double{w[i]} * w[i];
        mean += std::abs(double{w[i]}) / static_cast<double>(g.size());
      }
      for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(double{g[i]} - w[i]) / mean);
      const double rel_l2 = std::sqrt(num / den);
      EXPECT_LE(rel_l2, 1e-2) << "flash attention dqkv, " << what;
      EXPECT_LE(worst, 0.1) << "flash attention dqkv, " << what;
      ops::causal_self_attention_backward(gpu(qkv), gpu(mask), lse, Tensor(), gout, params, gpu(dout), again);
      EXPECT_TRUE(same_bits(again, gdqkv)) << what;
      std::printf("  flash attention, %s: out worst rel. error %.3g; dqkv relative L2 %.3g, worst %.3g of the mean\n",
                  what.c_str(), worst_out, rel_l2, worst);
    }
  }
  // The saved state's shape names the device that keeps it.
  Tensor lse_cpu = Tensor::empty({1, 1, 4}, DType::F32), none, o = Tensor::empty({1, 4, 64}, DType::F32);
  EXPECT_THROW(ops::causal_self_attention_train(rnd({1, 4, 192}, 86), Tensor(), ops::AttentionTrainParams{1, 0.125f},
                                                lse_cpu, none, o),
               Error);
}
