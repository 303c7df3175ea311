// `gpt2q bench-train`: training throughput on the CPU or (--device cuda) a
// GPU. For each geometry, a model with HF's initialisation
// (TrainableGPT2::init, no files) takes full optimizer steps on seeded
// random tokens — forward + backward (dropout 0.1 on, as in training),
// global-norm clipping and AdamW — and the median step time gives tokens/s
// (batch x seq real tokens per step). The time of the forward+backward alone
// is reported beside it, and the model FLOPs per token (PaLM's / nanoGPT's
// count: 6 per weight of every product, the LM head's included, plus 12 · L
// · C · T for attention's two products) give the achieved TFLOP/s. On a GPU
// the peak device memory of the steps is reported too.
#include <algorithm>
#include <chrono>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "cli/command.h"
#include "cli/device_args.h"
#include "core/device_memory.h"
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
  std::string device = "cpu", precision = "fp32";
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Model FLOPs per token of one training step (forward + backward): 6 per
// weight of every matrix product, plus attention's QKᵀ and PV, 12 · L · C · T.
// Embedding lookups are no products; the classifier's head reads one row
// per sequence and is left out.
double flops_per_token(const GPT2Config& c, bool lm, int64_t seq) {
  const double C = static_cast<double>(c.n_embd), L = static_cast<double>(c.n_layer);
  const double block = C * 3 * C + C * C + 2 * C * static_cast<double>(c.inner());
  double weights = L * block;
  if (lm) weights += static_cast<double>(c.vocab_size) * C;
  return 6 * weights + 12 * L * C * static_cast<double>(seq);
}

nlohmann::json bench_one(const BenchTrainArgs& a, const std::string& geometry, Device dev) {
  using namespace gpt2q::train;
  GPT2Config cfg = geometry_config(geometry, "--geometry");
  if (a.seq > cfg.n_positions) fail("--seq {}: more than n_positions {}", a.seq, cfg.n_positions);
  const Task task = a.task == "lm" ? Task::LM : Task::Classify;
  if (task == Task::Classify) cfg.id2label = {"World", "Sports", "Business", "Sci/Tech"};
  auto model = TrainableGPT2::init(cfg, task, task == Task::Classify ? 4 : 0, 1, dev);
  model.set_dropout(0.1);
  model.set_precision(parse_train_precision(a.precision));
  AdamW opt(model, AdamWOptions{});
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
    if (s == 1 && dev != Device::CPU) reset_device_memory_peak(dev);
    device_synchronize(dev);
    const auto t0 = Clock::now();
    model.zero_grad();
    drop.step = static_cast<uint64_t>(s);
    model.forward_backward(batch, labels, drop);
    device_synchronize(dev);
    const auto t1 = Clock::now();
    clip_grad_norm(model, 1.0);
    opt.step(model.parameters(), 1e-4);
    device_synchronize(dev);
    const auto t2 = Clock::now();
    if (s == 0) continue;
    fwd_bwd_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    step_s.push_back(std::chrono::duration<double>(t2 - t0).count());
  }
  const double step = median_of(step_s), fb = median_of(fwd_bwd_s);
  const double tokens = static_cast<double>(a.batch * a.seq);
  const double flops = flops_per_token(cfg, task == Task::LM, a.seq);
  nlohmann::json r = {{"geometry", geometry},
          {"task", a.task},
          {"parameters", params},
          {"batch", a.batch},
          {"seq", a.seq},
          {"precision", a.precision},
          {"steps_timed", a.steps},
          {"step_median_ms", step * 1e3},
          {"forward_backward_median_ms", fb * 1e3},
          {"optimizer_ms", (step - fb) * 1e3},
          {"tokens_per_s", tokens / step},
          {"model_flops_per_token", flops},
          {"achieved_tflops", tokens / step * flops / 1e12}};
  if (dev != Device::CPU) r["peak_device_bytes"] = device_memory_stats(dev).peak_used;
  return r;
}

void run(const BenchTrainArgs& a) {
  if (a.batch < 1 || a.seq < 2) fail("--batch must be >= 1 and --seq >= 2");
  if (a.steps < 1) fail("--steps {}: must be at least 1", a.steps);
  if (a.task != "classify" && a.task != "lm") fail("--task: expected classify or lm, got '{}'", a.task);
  const cli::DeviceChoice dc = cli::resolve_device({a.device, std::nullopt});
  if (train::parse_train_precision(a.precision) == train::TrainPrecision::bf16 && dc.device == Device::CPU)
    fail("--precision bf16 trains on a GPU (--device cuda); the CPU trains in fp32");
  nlohmann::json results = nlohmann::json::array();
  if (!a.json) {
    if (dc.device == Device::CPU)
      fmt::print("machine: {} | {} threads | {}\n", cpu_model_name(), num_threads(), cpu::blas_description());
    else
      fmt::print("device: {} ({} products)\n", dc.description, a.precision);
  }
  std::stringstream ss(a.geometries);
  for (std::string g; std::getline(ss, g, ',');) {
    auto r = bench_one(a, g, dc.device);
    if (!a.json) {
      fmt::print("{:>10} ({:.1f}M params, {}): batch {} x {} tokens: {:.1f} ms/step (fwd+bwd {:.1f}, clip+AdamW {:.1f}) "
                 "-> {:.0f} tokens/s, {:.2f} TFLOP/s ({:.3g} FLOP/token)",
                 g, r["parameters"].get<double>() / 1e6, a.task, a.batch, a.seq, r["step_median_ms"].get<double>(),
                 r["forward_backward_median_ms"].get<double>(), r["optimizer_ms"].get<double>(),
                 r["tokens_per_s"].get<double>(), r["achieved_tflops"].get<double>(),
                 r["model_flops_per_token"].get<double>());
      if (r.contains("peak_device_bytes")) fmt::print(", peak {}", format_bytes(r["peak_device_bytes"].get<size_t>()));
      fmt::print("\n");
    }
    results.push_back(std::move(r));
  }
  if (a.json)
    cli::print_json({{"machine", {{"cpu", cpu_model_name()}, {"threads", num_threads()}, {"blas", cpu::blas_description()}}},
                     {"device", a.device == "cpu" ? nlohmann::json("cpu") : nlohmann::json(dc.description)},
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
  cmd->add_option("--device", a->device, "cpu (default), cuda or cuda:N")->capture_default_str();
  cmd->add_option("--precision", a->precision, "fp32 (default) or bf16 (GPU: bf16 products on tensor cores)")
      ->capture_default_str();
  cmd->callback([a] { run(*a); });
}
