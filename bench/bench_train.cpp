// One AdamW step (train/adamw.h) over the projections of one GPT-2 124M block
// plus its biases and LayerNorms: 7.08 M parameters in 12 tensors. items =
// parameters; bytes = what a step reads and writes per parameter (reads p,
// g, m, v and writes p, m, v: 7 fp32 values).
#include <string>
#include <utility>
#include <vector>

#include "bench_common.h"
#include "train/adamw.h"

namespace gpt2q::bench {
namespace {

std::vector<train::Parameter> block_parameters() {
  const std::vector<std::pair<std::string, Shape>> shapes = {
      {"ln_1.weight", {768}},
      {"ln_1.bias", {768}},
      {"attn.c_attn.weight", {768, 2304}},
      {"attn.c_attn.bias", {2304}},
      {"attn.c_proj.weight", {768, 768}},
      {"attn.c_proj.bias", {768}},
      {"ln_2.weight", {768}},
      {"ln_2.bias", {768}},
      {"mlp.c_fc.weight", {768, 3072}},
      {"mlp.c_fc.bias", {3072}},
      {"mlp.c_proj.weight", {3072, 768}},
      {"mlp.c_proj.bias", {768}},
  };
  std::vector<train::Parameter> ps;
  for (const auto& [name, shape] : shapes) {
    train::Parameter p;
    p.name = name;
    p.value = synthetic_tensor(name, shape, 0.035f);
    p.grad = synthetic_tensor(name + ".grad", shape, 1e-3f);
    p.decay = shape.size() == 2;  // as HF's Trainer: no decay on biases and LayerNorm weights
    ps.push_back(std::move(p));
  }
  return ps;
}

void BM_AdamWStep(benchmark::State& state) {
  std::vector<train::Parameter> params = block_parameters();
  train::AdamWOptions opts;
  opts.weight_decay = 0.01;
  train::AdamW adamw(params, opts);
  int64_t n = 0;
  for (const auto& p : params) n += p.value.numel();
  for (auto _ : state) {
    adamw.step(params, 5e-5);
    benchmark::ClobberMemory();
  }
  set_rates(state, n * 7 * static_cast<int64_t>(sizeof(float)), n);
  state.counters["params"] = static_cast<double>(n);
}
BENCHMARK(BM_AdamWStep)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gpt2q::bench
