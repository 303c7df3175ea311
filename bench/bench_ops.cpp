// The fp32 ops of a GPT-2 124M block (ops/ops.h) and their backward
// (ops/ops_backward.h) at 128 tokens: LayerNorm over [128, 768], gelu_new over
// the MLP's [128, 3072], softmax over attention-shaped rows [12·128, 128],
// causal self-attention with 12 heads over qkv [1, 128, 2304].
// items = elements of the op's main input, bytes = that input's fp32 size.
// In-place ops whose repeated application would drift (towards subnormals)
// get their input restored outside the timed region.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/gemm_bf16.h"
#include "bench_common.h"
#include "ops/ops.h"
#include "ops/ops_backward.h"

namespace gpt2q::bench {
namespace {

constexpr int64_t kTokens = 128, kEmbd = 768, kHeads = 12, kMlp = 4 * kEmbd;
constexpr float kEps = 1e-5f;
const float kAttnScale = 1.0f / std::sqrt(static_cast<float>(kEmbd / kHeads));

void rates_of(benchmark::State& state, const Tensor& input) {
  set_rates(state, static_cast<int64_t>(input.nbytes()), input.numel());
}

// Restores `t` from `source` with the timer stopped.
void restore(benchmark::State& state, Tensor& t, const Tensor& source) {
  state.PauseTiming();
  std::memcpy(t.raw(), source.raw(), source.nbytes());
  state.ResumeTiming();
}

Tensor ln_weight() { return synthetic_tensor("bench.ln.w", {kEmbd}, 0.1f); }
Tensor ln_bias() { return synthetic_tensor("bench.ln.b", {kEmbd}, 0.02f); }
Tensor hidden() { return synthetic_tensor("bench.h", {kTokens, kEmbd}, 2.0f); }
Tensor qkv() { return synthetic_tensor("bench.qkv", {1, kTokens, 3 * kEmbd}, 2.0f); }

void BM_LayerNorm(benchmark::State& state) {
  const Tensor x = hidden(), w = ln_weight(), b = ln_bias();
  Tensor y = ops::scratch(x.shape());
  for (auto _ : state) {
    ops::layer_norm(x, w, b, kEps, y);
    benchmark::DoNotOptimize(y.raw());
  }
  rates_of(state, x);
}
BENCHMARK(BM_LayerNorm);

void BM_LayerNormBackward(benchmark::State& state) {
  const Tensor x = hidden(), w = ln_weight(), dy = synthetic_tensor("bench.dy", {kTokens, kEmbd}, 1.0f);
  Tensor dx = Tensor::empty(x.shape(), DType::F32), dw = Tensor::empty({kEmbd}, DType::F32),
         db = Tensor::empty({kEmbd}, DType::F32);
  for (auto _ : state) {  // accumulates (+=): values grow linearly, no drift to worry about
    ops::layer_norm_backward(x, w, kEps, dy, dx, dw, db);
    benchmark::DoNotOptimize(dx.raw());
  }
  rates_of(state, x);
}
BENCHMARK(BM_LayerNormBackward);

void BM_GeluNew(benchmark::State& state) {
  const Tensor source = synthetic_tensor("bench.mlp", {kTokens, kMlp}, 4.0f);
  Tensor x = source.clone();
  for (auto _ : state) {
    ops::gelu_new(x);
    benchmark::DoNotOptimize(x.raw());
    restore(state, x, source);
  }
  rates_of(state, x);
}
BENCHMARK(BM_GeluNew);

void BM_GeluNewBackward(benchmark::State& state) {
  const Tensor x = synthetic_tensor("bench.mlp", {kTokens, kMlp}, 4.0f);
  const Tensor source = synthetic_tensor("bench.dy", {kTokens, kMlp}, 1.0f);
  Tensor dy = source.clone();
  for (auto _ : state) {
    ops::gelu_new_backward(x, dy);
    benchmark::DoNotOptimize(dy.raw());
    restore(state, dy, source);
  }
  rates_of(state, x);
}
BENCHMARK(BM_GeluNewBackward);

void BM_Softmax(benchmark::State& state) {
  const Tensor source = synthetic_tensor("bench.scores", {kHeads * kTokens, kTokens}, 8.0f);
  Tensor x = source.clone();
  for (auto _ : state) {
    ops::softmax_lastdim(x);
    benchmark::DoNotOptimize(x.raw());
    restore(state, x, source);
  }
  rates_of(state, x);
}
BENCHMARK(BM_Softmax);

void BM_CausalAttention(benchmark::State& state) {
  const Tensor in = qkv();
  Tensor out = ops::scratch({1, kTokens, kEmbd});
  for (auto _ : state) {
    ops::causal_self_attention(in, Tensor(), kHeads, kAttnScale, out);
    benchmark::DoNotOptimize(out.raw());
  }
  rates_of(state, in);
}
BENCHMARK(BM_CausalAttention);

ops::AttentionTrainParams train_params() {
  ops::AttentionTrainParams p;
  p.n_head = kHeads;
  p.scale = kAttnScale;
  return p;  // no attention dropout
}

// The training forward: also keeps the probabilities [1, 12, 128, 128].
void BM_CausalAttentionTrain(benchmark::State& state) {
  const Tensor in = qkv();
  Tensor probs = ops::scratch({1, kHeads, kTokens, kTokens}), out = ops::scratch({1, kTokens, kEmbd});
  Tensor no_dropout;
  for (auto _ : state) {
    ops::causal_self_attention_train(in, Tensor(), train_params(), probs, no_dropout, out);
    benchmark::DoNotOptimize(out.raw());
  }
  rates_of(state, in);
}
BENCHMARK(BM_CausalAttentionTrain);

void BM_CausalAttentionBackward(benchmark::State& state) {
  const Tensor in = qkv(), dout = synthetic_tensor("bench.dout", {1, kTokens, kEmbd}, 1.0f);
  Tensor probs = ops::scratch({1, kHeads, kTokens, kTokens}), out = ops::scratch({1, kTokens, kEmbd});
  Tensor no_dropout;
  ops::causal_self_attention_train(in, Tensor(), train_params(), probs, no_dropout, out);
  Tensor dqkv = ops::scratch(in.shape());
  for (auto _ : state) {
    ops::causal_self_attention_backward(in, Tensor(), probs, Tensor(), out, train_params(), dout, dqkv);
    benchmark::DoNotOptimize(dqkv.raw());
  }
  rates_of(state, in);
}
BENCHMARK(BM_CausalAttentionBackward);

// The backward of c_fc (768 -> 3072) over 128 tokens: dx, dw and db.
// items = FLOPs (2 GEMMs of 2·128·768·3072), bytes = the fp32 weight.
void BM_LinearBackward(benchmark::State& state) {
  const Tensor x = hidden(), w = synthetic_tensor("bench.weight", {kEmbd, kMlp}, 0.035f);
  const Tensor dy = synthetic_tensor("bench.dy", {kTokens, kMlp}, 1.0f);
  Tensor dx = ops::scratch(x.shape()), dw = Tensor::empty(w.shape(), DType::F32),
         db = Tensor::empty({kMlp}, DType::F32);
  for (auto _ : state) {
    ops::linear_backward(x, w, dy, dx, dw, db);
    benchmark::DoNotOptimize(dx.raw());
  }
  set_rates(state, static_cast<int64_t>(w.nbytes()), 2 * 2 * kTokens * kEmbd * kMlp);
}
BENCHMARK(BM_LinearBackward);

}  // namespace
}  // namespace gpt2q::bench

// --- the bf16 GEMM kernel alone (backend/cpu/gemm_bf16.h) on packed inputs,
// next to sgemm on the same shapes: items = FLOPs, bytes = packed weight. ---

namespace gpt2q::bench {
namespace {

void BM_GemmBf16(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  if (!cpu::has_native_bf16_gemm()) {
    state.SkipWithError("this CPU has no AVX512_BF16");
    return;
  }
  const std::vector<float> a = synthetic("bench.x", rows * in, 1.0f), b = synthetic("bench.w", out * in, 0.035f);
  std::vector<uint16_t> ap(static_cast<size_t>(rows * cpu::bf16_padded_k(in)));
  std::vector<uint16_t> bp(static_cast<size_t>(cpu::bf16_packed_b_elems(out, in)));
  cpu::bf16_pack_rows(a.data(), rows, in, ap.data());
  cpu::bf16_pack_panels(b.data(), out, in, bp.data());
  std::vector<float> c(static_cast<size_t>(rows * out));
  for (auto _ : state) {
    cpu::gemm_bf16_packed(ap.data(), rows, bp.data(), out, in, nullptr, nullptr, c.data(), out);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, static_cast<int64_t>(bp.size() * sizeof(uint16_t)), 2 * rows * in * out);
}
BENCHMARK(BM_GemmBf16)->Apply(gpt2_linear_shapes);

void BM_SgemmNt(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  const std::vector<float> a = synthetic("bench.x", rows * in, 1.0f), b = synthetic("bench.w", out * in, 0.035f);
  std::vector<float> c(static_cast<size_t>(rows * out));
  for (auto _ : state) {
    cpu::sgemm_nt(rows, out, in, 1.0f, a.data(), in, b.data(), in, 0.0f, c.data(), out);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, out * in * static_cast<int64_t>(sizeof(float)), 2 * rows * in * out);
}
BENCHMARK(BM_SgemmNt)->Apply(gpt2_linear_shapes);

}  // namespace
}  // namespace gpt2q::bench
