// `gpt2q bench-train`: CPU training throughput. For each geometry, a model
// with HF's initialisation (TrainableGPT2::init, no files) takes full
// optimizer steps on seeded random tokens — forward + backward (dropout 0.1
// on, as in training), global-norm clipping and AdamW — and the median step
// time gives tokens/s (batch x seq real tokens per step). The time of the
// forward+backward alone is reported beside it.
#include <algorithm>
#include <chrono>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "cli/command.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "model/synthetic_weights.h"
#include "train/adamw.h"
#include "train/grad_clip.h"
#include "train/trainable_gpt2.h"

namespace {

using namespace gpt2q;
using Clock = std::chrono::steady_clock;

struct BenchTrainArgs {
  std::string geometries = "128x2x4,124m", task = "classify";
  int64_t batch = 8, seq = 128;
  int steps = 3;
  bool json = false;
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

nlohmann::json bench_one(const BenchTrainArgs& a, const std::string& geometry) {
  using namespace gpt2q::train;
  GPT2Config cfg = geometry_config(geometry, "--geometry");
  if (a.seq > cfg.n_positions) fail("--seq {}: more than n_positions {}", a.seq, cfg.n_positions);
  const Task task = a.task == "lm" ? Task::LM : Task::Classify;
  if (task == Task::Classify) cfg.id2label = {"World", "Sports", "Business", "Sci/Tech"};
  auto model = TrainableGPT2::init(cfg, task, task == Task::Classify ? 4 : 0, 1);
  model.set_dropout(0.1);
  AdamW opt(model.parameters(), AdamWOptions{});
  int64_t params = 0;
  for (const auto& p : model.parameters()) params += p.value.numel();

  std::mt19937_64 rng(1234);
  TokenBatch batch;
  batch.batch = a.batch;
  batch.seq = a.seq;
  for (int64_t i = 0; i < a.batch * a.seq; ++i) batch.ids.push_back(static_cast<int32_t>(rng() % 50000));
  batch.lengths.assign(static_cast<size_t>(a.batch), a.seq);
  std::vector<int32_t> labels;
  if (task == Task::Classify)
    for (int64_t b = 0; b < a.batch; ++b) labels.push_back(static_cast<int32_t>(b % 4));

  DropoutContext drop{true, 7, 0, 0};
  std::vector<double> step_s, fwd_bwd_s;
  for (int s = 0; s < a.steps + 1; ++s) {  // the first step warms up
    const auto t0 = Clock::now();
    model.zero_grad();
    drop.step = static_cast<uint64_t>(s);
    model.forward_backward(batch, labels, drop);
    const auto t1 = Clock::now();
    clip_grad_norm(model.parameters(), 1.0);
    opt.step(model.parameters(), 1e-4);
    const auto t2 = Clock::now();
    if (s == 0) continue;
    fwd_bwd_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    step_s.push_back(std::chrono::duration<double>(t2 - t0).count());
  }
  const double step = median_of(step_s), fb = median_of(fwd_bwd_s);
  const double tokens = static_cast<double>(a.batch * a.seq);
  return {{"geometry", geometry},
          {"task", a.task},
          {"parameters", params},
          {"batch", a.batch},
          {"seq", a.seq},
          {"steps_timed", a.steps},
          {"step_median_ms", step * 1e3},
          {"forward_backward_median_ms", fb * 1e3},
          {"optimizer_ms", (step - fb) * 1e3},
          {"tokens_per_s", tokens / step}};
}

void run(const BenchTrainArgs& a) {
  if (a.batch < 1 || a.seq < 2) fail("--batch must be >= 1 and --seq >= 2");
  if (a.steps < 1) fail("--steps {}: must be at least 1", a.steps);
  if (a.task != "classify" && a.task != "lm") fail("--task: expected classify or lm, got '{}'", a.task);
  nlohmann::json results = nlohmann::json::array();
  if (!a.json)
    fmt::print("machine: {} | {} threads | {}\n", cpu_model_name(), num_threads(), cpu::blas_description());
  std::stringstream ss(a.geometries);
  for (std::string g; std::getline(ss, g, ',');) {
    auto r = bench_one(a, g);
    if (!a.json)
      fmt::print("{:>10} ({:.1f}M params, {}): batch {} x {} tokens: {:.0f} ms/step (fwd+bwd {:.0f}, clip+AdamW {:.0f}) "
                 "-> {:.0f} tokens/s\n",
                 g, r["parameters"].get<double>() / 1e6, a.task, a.batch, a.seq, r["step_median_ms"].get<double>(),
                 r["forward_backward_median_ms"].get<double>(), r["optimizer_ms"].get<double>(),
                 r["tokens_per_s"].get<double>());
    results.push_back(std::move(r));
  }
  if (a.json)
    cli::print_json({{"machine", {{"cpu", cpu_model_name()}, {"threads", num_threads()}, {"blas", cpu::blas_description()}}},
                     {"results", results}});
}

}  // namespace

GPT2Q_COMMAND(bench_train) {
  auto a = std::make_shared<BenchTrainArgs>();
  auto* cmd = app.add_subcommand("bench-train", "Training tokens/s (forward + backward + AdamW) for GPT-2 geometries");
  cmd->add_option("--geometry", a->geometries, "comma-separated: 124m or WIDTHxLAYERSxHEADS")->capture_default_str();
  cmd->add_option("--task", a->task, "classify or lm (lm adds the vocab-sized head)")->capture_default_str();
  cmd->add_option("--batch", a->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--seq", a->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--steps", a->steps, "timed steps (after one warm-up step)")->capture_default_str();
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->callback([a] { run(*a); });
}
