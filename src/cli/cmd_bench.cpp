// `gpt2q bench`: fp32 forward latency and throughput of a GPT-2 geometry
// built in memory (make_synthetic_checkpoint: no files needed), next to the
// "sgemm-bound rate": the same sgemm calls the forward makes for its linear
// layers and LM head, with the same weights, timed alone. Their ratio says
// how much the rest (attention, LayerNorm, GELU, residuals) costs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "cli/command.h"
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
using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string geometry = "124m";
  int64_t batch = 1, seq = 128, throughput_batch = 32;
  int iters = 5, throughput_iters = 3;
  int64_t decode_tokens = 32;
  bool json = false;
  std::string tokenizer, text;
  int tokenizer_repeats = 3;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs `fn` warmup + iters times; returns the timed durations in seconds.
template <typename Fn>
std::vector<double> time_runs(int warmup, int iters, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    fn();
    t.push_back(seconds_since(t0));
  }
  return t;
}

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

TokenBatch bench_tokens(int64_t batch, int64_t seq, int64_t vocab) {
  TokenBatch tb;
  tb.batch = batch;
  tb.seq = seq;
  for (int64_t i = 0; i < batch * seq; ++i)
    tb.ids.push_back(static_cast<int32_t>(splitmix64(static_cast<uint64_t>(i)) % static_cast<uint64_t>(vocab)));
  tb.lengths.assign(static_cast<size_t>(batch), seq);
  return tb;
}

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
  m.forward_min_s = *std::min_element(fwd.begin(), fwd.end());
  m.sgemm_s = median(gemm);
  m.sgemm_min_s = *std::min_element(gemm.begin(), gemm.end());
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
    // Greedy decoding after a --seq prompt, one token per step through the KV cache.
    if (a.seq + a.decode_tokens > cfg.n_positions)
      fail("bench: --seq {} + --decode-tokens {} exceed n_positions {}", a.seq, a.decode_tokens, cfg.n_positions);
    TokenBatch prompt = bench_tokens(1, a.seq, cfg.vocab_size);
    GenerateOptions opts;
    opts.max_new_tokens = a.decode_tokens;
    GenerateOptions prefill_only = opts;
    prefill_only.max_new_tokens = 1;
    const double prefill_s = median(time_runs(1, a.iters, [&] { (void)generate(*model, prompt.ids, prefill_only); }));
    const double total_s = median(time_runs(0, a.iters, [&] { (void)generate(*model, prompt.ids, opts); }));
    const double per_token_s = (total_s - prefill_s) / static_cast<double>(a.decode_tokens - 1 > 0 ? a.decode_tokens - 1 : 1);
    out["decode"] = {{"prompt", a.seq}, {"new_tokens", a.decode_tokens}, {"iters", a.iters},
                     {"generate_median_ms", total_s * 1e3}, {"prefill_and_first_token_ms", prefill_s * 1e3},
                     {"ms_per_token", per_token_s * 1e3}, {"tokens_per_s", 1.0 / per_token_s}};
    say(fmt::format("decode: {} new tokens after a {}-token prompt in {:.1f} ms (prompt + first token {:.1f} ms), "
                    "then {:.2f} ms/token = {:.1f} tokens/s",
                    a.decode_tokens, a.seq, total_s * 1e3, prefill_s * 1e3, per_token_s * 1e3, 1.0 / per_token_s));
    std::fflush(stdout);
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

}  // namespace

GPT2Q_COMMAND(bench) {
  auto args = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Time the fp32 forward (latency, throughput) against its sgemm-bound rate");
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
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer dir: also measure tokenizer MB/s on --text");
  cmd->add_option("--text", args->text, "Text file for the tokenizer benchmark (e.g. wiki.test.raw)");
  cmd->add_option("--tokenizer-repeats", args->tokenizer_repeats, "Timed tokenizer passes")->capture_default_str();
  cmd->add_flag("--json", args->json, "One JSON object on stdout instead of text");
  cmd->callback([args] { run_bench(*args); });
}
