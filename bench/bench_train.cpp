// One AdamW step (train/adamw.h) over the projections of one GPT-2 124M block
// plus its biases and LayerNorms: 7.08 M parameters in 12 tensors; and over
// all of GPT-2 124M's parameters (AdamWStep124M, wall time). items =
// parameters; bytes = what a step reads and writes per parameter (reads p,
// g, m, v and writes p, m, v: 7 fp32 values).
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bench_common.h"
#include "train/adamw.h"

namespace gpt2q::bench {
namespace {

const std::vector<std::pair<std::string, Shape>>& block_shapes() {
  static const std::vector<std::pair<std::string, Shape>> shapes = {
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
  return shapes;
}

train::Parameter make_parameter(const std::string& name, const Shape& shape) {
  train::Parameter p;
  p.name = name;
  p.value = synthetic_tensor(name, shape, 0.035f);
  p.grad = synthetic_tensor(name + ".grad", shape, 1e-3f);
  p.decay = shape.size() == 2;  // as HF's Trainer: no decay on biases and LayerNorm weights
  return p;
}

std::vector<train::Parameter> block_parameters() {
  std::vector<train::Parameter> ps;
  for (const auto& [name, shape] : block_shapes()) ps.push_back(make_parameter(name, shape));
  return ps;
}

// All of GPT-2 124M's 148 tensors (124.4 M parameters; wte 50257 × 768 the
// largest), as the trainer's step sees them.
std::vector<train::Parameter> gpt2_124m_parameters() {
  std::vector<train::Parameter> ps;
  ps.push_back(make_parameter("wte", {50257, 768}));
  ps.push_back(make_parameter("wpe", {1024, 768}));
  for (int b = 0; b < 12; ++b)
    for (const auto& [name, shape] : block_shapes()) ps.push_back(make_parameter(fmt::format("h.{}.{}", b, name), shape));
  ps.push_back(make_parameter("ln_f.weight", {768}));
  ps.push_back(make_parameter("ln_f.bias", {768}));
  return ps;
}

void run_adamw(benchmark::State& state, std::vector<train::Parameter> params) {
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

void BM_AdamWStep(benchmark::State& state) { run_adamw(state, block_parameters()); }
BENCHMARK(BM_AdamWStep)->Unit(benchmark::kMillisecond);

// Wall time: the step runs on OMP_NUM_THREADS threads, whose work the
// benchmark thread's CPU time would not show.
void BM_AdamWStep124M(benchmark::State& state) { run_adamw(state, gpt2_124m_parameters()); }
BENCHMARK(BM_AdamWStep124M)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace gpt2q::bench
