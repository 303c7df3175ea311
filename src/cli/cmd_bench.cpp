// `gpt2q bench`: fp32 forward latency and throughput of a GPT-2 geometry
// built in memory (make_synthetic_checkpoint: no files needed), next to the
// "sgemm-bound rate": the same sgemm calls the forward makes for its linear
// layers and LM head, with the same weights, timed alone. Their ratio says
// how much the rest (attention, LayerNorm, GELU, residuals) costs.
// With --method or --model it times each weight format instead
// (bench_quant.cpp); with --device cuda, gpt2q's side of the GPU benchmark
// against PyTorch and bitsandbytes (bench_gpu.cpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "cli/bench_gpu.h"
#include "cli/bench_quant.h"
#include "cli/bench_timing.h"
#include "cli/command.h"
#include "cli/device_args.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"

#if __has_include("text/tokenizer_bench.h")
#include "text/tokenizer.h"
#include "text/tokenizer_bench.h"
#define GPT2Q_HAVE_TOKENIZER_BENCH 1
#endif

namespace {

using namespace gpt2q;
using namespace gpt2q::cli;
using Clock = BenchClock;

struct BenchArgs {
  std::string geometry = "124m";
  int64_t batch = 1, seq = 128, throughput_batch = 32;
  int iters = 5, throughput_iters = 3;
  int64_t decode_tokens = 32;
  bool json = false;
  std::string tokenizer, text;
  int tokenizer_repeats = 3;
  // Per-method run (bench_quant.cpp) when --method or --model is given.
  std::string method, model, keep_dtype = "fp16";
  DeviceArgs device;  // --device; --compute-dtype: the per-method run's (CPU)
  quant::QuantizeOptions quant;
  // --device cuda (bench_gpu.h); the other GPU-only options go into `gpu`.
  GpuBenchArgs gpu;
};

// The sgemm calls of one forward over `rows` token rows: the four linears of
// every block (bias pre-filled, beta = 1, as the forward does) and the tied
// LM head (NT against wte), on the checkpoint's own weights.
struct ForwardGemms {
  const Checkpoint& ck;
  int64_t rows;
  std::vector<float> a, c;

  ForwardGemms(const Checkpoint& ck_, int64_t rows_) : ck(ck_), rows(rows_) {
    const GPT2Config& cfg = ck.config;
    const int64_t widest_in = std::max(cfg.n_embd, cfg.inner());
    const int64_t widest_out = std::max({3 * cfg.n_embd, cfg.inner(), cfg.vocab_size});
    a.resize(static_cast<size_t>(rows * widest_in));
    c.resize(static_cast<size_t>(rows * widest_out));
    std::mt19937_64 rng(1);
    for (float& v : a) v = static_cast<float>((rng() >> 40) * 0x1p-24) - 0.5f;
  }

  double flops() const {
    const GPT2Config& cfg = ck.config;
    const double C = cfg.n_embd, I = cfg.inner(), V = cfg.vocab_size;
    return 2.0 * rows * (cfg.n_layer * (C * 3 * C + C * C + 2 * C * I) + C * V);
  }

  void run() {
    const GPT2Config& cfg = ck.config;
    const int64_t C = cfg.n_embd, I = cfg.inner();
    auto linear = [&](const std::string& name, int64_t in, int64_t out) {
      cpu::linear(a.data(), rows, in, ck.tensors.at(name + ".weight").data<float>(),
                  ck.tensors.at(name + ".bias").data<float>(), out, c.data());
    };
    for (int64_t l = 0; l < cfg.n_layer; ++l) {
      const std::string p = fmt::format("h.{}.", l);
      linear(p + "attn.c_attn", C, 3 * C);
      linear(p + "attn.c_proj", C, C);
      linear(p + "mlp.c_fc", C, I);
      linear(p + "mlp.c_proj", I, C);
    }
    cpu::sgemm_nt(rows, cfg.vocab_size, C, 1.0f, a.data(), C, ck.tensors.at("wte.weight").data<float>(), C, 0.0f,
                  c.data(), cfg.vocab_size);
  }
};

struct Measured {
  double forward_s = 0, forward_min_s = 0, sgemm_s = 0, sgemm_min_s = 0, flops = 0;
  double forward_gflops() const { return flops / forward_s * 1e-9; }
  double sgemm_gflops() const { return flops / sgemm_s * 1e-9; }
  double fraction() const { return sgemm_s / forward_s; }
  double fraction_of_mins() const { return sgemm_min_s / forward_min_s; }
};

// Forward and sgemm-only runs alternate, so that both see the same machine
// load (on a shared machine, timing one after the other compares loads, not
// code). Medians and minima of each are reported.
Measured measure(const GPT2Model& model, const Checkpoint& ck, int64_t batch, int64_t seq, int warmup, int iters) {
  TokenBatch tb = bench_tokens(batch, seq, ck.config.vocab_size);
  ForwardGemms gemms(ck, batch * seq);
  auto forward = [&] { (void)model.lm_logits(tb); };
  auto sgemms = [&] { gemms.run(); };
  for (int i = 0; i < warmup; ++i) {
    forward();
    sgemms();
  }
  std::vector<double> fwd, gemm;
  for (int i = 0; i < iters; ++i) {
    fwd.push_back(time_runs(0, 1, forward)[0]);
    gemm.push_back(time_runs(0, 1, sgemms)[0]);
  }
  Measured m;
  m.flops = gemms.flops();
  m.forward_s = median(fwd);
  m.forward_min_s = minimum(fwd);
  m.sgemm_s = median(gemm);
  m.sgemm_min_s = minimum(gemm);
  return m;
}

nlohmann::json measured_json(const Measured& m, int64_t batch, int64_t seq, int iters) {
  return {{"batch", batch},
          {"seq", seq},
          {"iters", iters},
          {"forward_median_ms", m.forward_s * 1e3},
          {"forward_min_ms", m.forward_min_s * 1e3},
          {"tokens_per_s", batch * seq / m.forward_s},
          {"samples_per_s", batch / m.forward_s},
          {"linear_gflop", m.flops * 1e-9},
          {"forward_gflops", m.forward_gflops()},
          {"sgemm_median_ms", m.sgemm_s * 1e3},
          {"sgemm_min_ms", m.sgemm_min_s * 1e3},
          {"sgemm_gflops", m.sgemm_gflops()},
          {"fraction_of_sgemm_rate", m.fraction()},
          {"fraction_of_sgemm_rate_min", m.fraction_of_mins()}};
}

void run_bench(const BenchArgs& a) {
  GPT2Config cfg = geometry_config(a.geometry, "--geometry");
  if (a.batch < 1 || a.seq < 1 || a.throughput_batch < 0 || a.iters < 1 || a.throughput_iters < 1 ||
      a.decode_tokens < 0)
    fail("bench: --batch, --seq, --iters and --throughput-iters must be >= 1 (--throughput-batch, --decode-tokens >= 0)");
  if (a.seq > cfg.n_positions) fail("bench: --seq {} exceeds n_positions {}", a.seq, cfg.n_positions);
  if (a.tokenizer.empty() != a.text.empty()) fail("bench: --tokenizer and --text go together");

  auto t0 = Clock::now();
  Checkpoint ck = make_synthetic_checkpoint(cfg, ModelKind::CausalLM, 0);
  auto model = GPT2Model::from_checkpoint(ck);
  const double build_s = seconds_since(t0);
  int64_t params = 0;
  for (const auto& [name, t] : ck.tensors) params += t.numel();

  nlohmann::json out = {
      {"machine", {{"cpu", cpu_model_name()}, {"threads", num_threads()}, {"blas", cpu::blas_description()}}},
      {"geometry",
       {{"name", a.geometry}, {"n_embd", cfg.n_embd}, {"n_layer", cfg.n_layer}, {"n_head", cfg.n_head},
        {"vocab_size", cfg.vocab_size}, {"params", params}}},
      {"build_s", build_s}};
  auto say = [&](const std::string& line) {
    if (!a.json) fmt::print("{}\n", line);
  };
  say(fmt::format("machine: {} | {} threads | {}", cpu_model_name(), num_threads(), cpu::blas_description()));
  say(fmt::format("geometry {}: n_embd {} n_layer {} n_head {} vocab {} ({} params), built in {:.2f} s", a.geometry,
                  cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.vocab_size, params, build_s));
  std::fflush(stdout);

  auto report = [&](const char* what, const Measured& m, int64_t batch) {
    say(fmt::format("{} {}x{}: forward {:.1f} ms (min {:.1f}) = {:.0f} tokens/s, {:.2f} samples/s | linear+head "
                    "{:.1f} GFLOP at {:.1f} GFLOP/s; sgemm alone {:.1f} ms (min {:.1f}) = {:.1f} GFLOP/s; forward "
                    "runs at {:.0f}% of the sgemm-bound rate ({:.0f}% comparing minima)",
                    what, batch, a.seq, m.forward_s * 1e3, m.forward_min_s * 1e3, batch * a.seq / m.forward_s,
                    batch / m.forward_s, m.flops * 1e-9, m.forward_gflops(), m.sgemm_s * 1e3, m.sgemm_min_s * 1e3,
                    m.sgemm_gflops(), 100 * m.fraction(), 100 * m.fraction_of_mins()));
    std::fflush(stdout);
  };
  Measured lat = measure(*model, ck, a.batch, a.seq, 2, a.iters);
  out["latency"] = measured_json(lat, a.batch, a.seq, a.iters);
  report("latency", lat, a.batch);
  if (a.decode_tokens > 0) {
    // Greedy decoding after a --seq prompt, one token per step through the KV cache, each step timed.
    if (a.seq + a.decode_tokens > cfg.n_positions)
      fail("bench: --seq {} + --decode-tokens {} exceed n_positions {}", a.seq, a.decode_tokens, cfg.n_positions);
    DecodeSamples d;
    decode_once(*model, a.seq, a.decode_tokens, nullptr);
    for (int i = 0; i < a.iters; ++i) decode_once(*model, a.seq, a.decode_tokens, &d);
    if (!d.steps.empty()) {
      const double step_s = median(d.steps), best_s = minimum(d.steps);
      out["decode"] = {{"prompt", a.seq},
                       {"new_tokens", a.decode_tokens},
                       {"iters", a.iters},
                       {"prefill_and_first_token_ms", median(d.prefill) * 1e3},
                       {"ms_per_token", step_s * 1e3},
                       {"ms_per_token_min", best_s * 1e3},
                       {"tokens_per_s", 1.0 / step_s}};
      say(fmt::format("decode: {}-token prompt + first token {:.1f} ms, then {:.2f} ms/token (min {:.2f}) = {:.1f} "
                      "tokens/s",
                      a.seq, median(d.prefill) * 1e3, step_s * 1e3, best_s * 1e3, 1.0 / step_s));
      std::fflush(stdout);
    }
  }
  if (a.throughput_batch > 0) {
    // One warm-up, as for latency: it maps the activation buffers, which the
    // scratch cache then keeps (the sgemm-only run reuses its buffers too).
    Measured thr = measure(*model, ck, a.throughput_batch, a.seq, 1, a.throughput_iters);
    out["throughput"] = measured_json(thr, a.throughput_batch, a.seq, a.throughput_iters);
    report("throughput", thr, a.throughput_batch);
  }

  if (!a.tokenizer.empty()) {
#ifdef GPT2Q_HAVE_TOKENIZER_BENCH
    Tokenizer tok = Tokenizer::load(a.tokenizer);
    std::string text = read_file(a.text);
    double mbs = tokenizer_throughput_mb_s(tok, text, a.tokenizer_repeats);
    out["tokenizer"] = {{"text", a.text}, {"bytes", text.size()}, {"repeats", a.tokenizer_repeats}, {"mb_per_s", mbs}};
    say(fmt::format("tokenizer: {:.2f} MB/s on {} ({} bytes, {} repeats, one thread)", mbs, a.text, text.size(),
                    a.tokenizer_repeats));
#else
    fail("bench: this build has no tokenizer benchmark (src/text/tokenizer_bench.h)");
#endif
  }
  if (a.json) cli::print_json(out);
}

// --method / --model: the per-method table of bench_quant.cpp, with the
// shared options (--batch is 1 there: latency is batch 1 by definition).
void run_methods(const BenchArgs& a) {
  if (a.batch != 1) fail("bench: --batch applies to the fp32 run only; --method and --model time batch 1");
  if (!a.tokenizer.empty()) fail("bench: --tokenizer applies to the fp32 run only, not with --method or --model");
  MethodBenchArgs m;
  m.geometry = a.geometry;
  m.model = a.model;
  m.method = a.method;
  m.opt = a.quant;
  m.opt.keep_dtype = quant::parse_keep_dtype(a.keep_dtype);
  if (a.device.compute_dtype) {
    m.opt.compute_dtype = quant::parse_compute_dtype_option(*a.device.compute_dtype);
    m.compute_dtype_given = true;
  }
  m.seq = a.seq;
  m.throughput_batch = a.throughput_batch;
  m.decode_tokens = a.decode_tokens;
  m.iters = a.iters;
  m.throughput_iters = a.throughput_iters;
  m.json = a.json;
  run_method_bench(m);
}

// Options that only one of the two paths reads: given to the other, an Error
// (nothing is ignored silently).
const std::vector<std::string> kCpuOnly = {
    "--batch", "--seq", "--throughput-batch", "--iters", "--throughput-iters", "--decode-tokens",
    "--tokenizer-repeats", "--symmetric", "--per-channel", "--threshold", "--block-size", "--double-quant",
    "--include", "--exclude", "--all-tensors", "--keep-dtype", "--compute-dtype"};
const std::vector<std::string> kGpuOnly = {"--data", "--lm-model", "--skip", "--n1",
                                           "--n256", "--ppl-windows", "--decode-runs", "--out"};

void run_gpu(const CLI::App& cmd, const BenchArgs& a) {
  for (const auto& name : kCpuOnly)
    if (cmd.count(name)) fail("bench --device {}: {} applies to the CPU run only", a.device.device, name);
  GpuBenchArgs g = a.gpu;
  g.device = a.device.device;
  g.geometry = a.geometry;
  g.method = a.method;
  g.model = a.model;
  g.text = a.text;
  g.tokenizer = a.tokenizer;
  g.json = a.json;
  run_gpu_bench(g);
}

}  // namespace

GPT2Q_COMMAND(bench) {
  auto args = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand(
      "bench", "Time the forward: fp32 against its sgemm-bound rate, or each weight format (--method, --model)");
  cmd->add_option("--geometry", args->geometry, "124m, or WIDTHxLAYERSxHEADS (vocab 50257)")->capture_default_str();
  cmd->add_option("--batch", args->batch, "Batch size for the latency run")->capture_default_str();
  cmd->add_option("--seq", args->seq, "Tokens per sequence")->capture_default_str();
  cmd->add_option("--throughput-batch", args->throughput_batch, "Batch size for the throughput run (0: skip)")
      ->capture_default_str();
  cmd->add_option("--iters", args->iters, "Timed latency runs (after 2 warm-ups); medians and minima are reported")
      ->capture_default_str();
  cmd->add_option("--throughput-iters", args->throughput_iters, "Timed throughput runs")->capture_default_str();
  cmd->add_option("--decode-tokens", args->decode_tokens, "Greedy tokens to generate after a --seq prompt (0: skip)")
      ->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Tokenizer dir: also measure tokenizer MB/s on --text (CPU); --device cuda: the texts' tokenizer");
  cmd->add_option("--text", args->text,
                  "Text file for the tokenizer benchmark (e.g. wiki.test.raw); --device cuda: WikiText-2 test for "
                  "the perplexity pass");
  cmd->add_option("--tokenizer-repeats", args->tokenizer_repeats, "Timed tokenizer passes")->capture_default_str();
  cmd->add_flag("--json", args->json, "One JSON object on stdout instead of text");
  const std::string per_method = "Per-method run";
  cmd->add_option("--method", args->method, std::string("Quantize in memory and time each format: ") +
                                                bench_method_names())
      ->group(per_method);
  cmd->add_option("--model", args->model, "Time this checkpoint (quantized or not; with --method: quantize it first)")
      ->group(per_method);
  cmd->add_flag("--symmetric", args->quant.symmetric, "int8-tensor: scale = absmax / 127")->group(per_method);
  cmd->add_flag("--per-channel", args->quant.per_channel, "int8-tensor: one scale per output channel")
      ->group(per_method);
  cmd->add_option("--threshold", args->quant.threshold, "llm-int8: outlier threshold")
      ->default_val(6.0)
      ->group(per_method);
  cmd->add_option("--block-size", args->quant.block_size, "nf4/fp4: block size")->default_val(64)->group(per_method);
  cmd->add_flag("--double-quant", args->quant.double_quant, "nf4/fp4: double quantization")->group(per_method);
  cmd->add_option("--include", args->quant.include, "Quantize only tensors matching this glob")->group(per_method);
  cmd->add_option("--exclude", args->quant.exclude, "Leave tensors matching this glob unquantized")
      ->group(per_method);
  cmd->add_flag("--all-tensors", args->quant.all_tensors, "Quantize embeddings and heads too")->group(per_method);
  cmd->add_option("--keep-dtype", args->keep_dtype, "dtype of unquantized tensors: fp16 or fp32")
      ->default_val("fp16")
      ->group(per_method);
  add_device_options(cmd, args->device);
  cmd->get_option("--device")->description("cpu (default), or cuda / cuda:N: gpt2q's side of the GPU benchmark");
  cmd->get_option("--compute-dtype")
      ->description("int8-tensor/nf4/fp4: fp32 (default) or bf16 (bf16 activations and weights, fp32 sums; "
                    ">= 16 rows); with --model alone: overrides the checkpoint's")
      ->group(per_method);
  const std::string gpu = "GPU run (--device cuda)";
  GpuBenchArgs& g = args->gpu;
  cmd->add_option("--data", g.data, "AG News test.csv: classify at batch 1 and 256 (--method: all or a comma list of " +
                                        std::string(gpu_bench_variant_names()) + "; --model: the classifier)")
      ->group(gpu);
  cmd->add_option("--lm-model", g.lm_model, "LM checkpoint for perplexity and decode (default: gpt2q init's 124M)")
      ->group(gpu);
  cmd->add_option("--skip", g.skip, "Comma list of phases to leave out: batch1, batch256, ppl, decode, classify, lm")
      ->group(gpu);
  cmd->add_option("--n1", g.n1, "Texts classified at batch 1")->capture_default_str()->group(gpu);
  cmd->add_option("--n256", g.n256, "Texts classified in batches of 256")->capture_default_str()->group(gpu);
  cmd->add_option("--ppl-windows", g.ppl_windows, "Perplexity windows (0: the whole text)")
      ->capture_default_str()
      ->group(gpu);
  cmd->add_option("--decode-runs", g.decode_runs, "Timed greedy decodes (the median is reported)")
      ->capture_default_str()
      ->group(gpu);
  cmd->add_option("--out", g.out, "Also write the JSON here, after every measurement")->group(gpu);
  cmd->callback([cmd, args] {
    if (args->device.device != "cpu") {
      run_gpu(*cmd, *args);
      return;
    }
    for (const auto& name : kGpuOnly)
      if (cmd->count(name)) fail("bench: {} applies to --device cuda only", name);
    if (args->method.empty() && args->model.empty()) {
      run_bench(*args);
    } else {
      run_methods(*args);
    }
  });
}
