#pragma once
// Timing helpers shared by `gpt2q bench`'s fp32 run (cmd_bench.cpp) and its
// per-method run (bench_quant.cpp): wall-clock runs, medians and minima,
// deterministic token batches, and step-by-step decode timing.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "model/gpt2.h"
#include "model/sampling.h"
#include "model/synthetic_weights.h"

namespace gpt2q::cli {

using BenchClock = std::chrono::steady_clock;

inline double seconds_since(BenchClock::time_point t0) {
  return std::chrono::duration<double>(BenchClock::now() - t0).count();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double minimum(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// Runs `fn` warmup + iters times; returns the timed durations in seconds.
template <typename Fn>
std::vector<double> time_runs(int warmup, int iters, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    auto t0 = BenchClock::now();
    fn();
    t.push_back(seconds_since(t0));
  }
  return t;
}

// batch x seq token ids from splitmix64 (same batch every run), no padding.
inline TokenBatch bench_tokens(int64_t batch, int64_t seq, int64_t vocab) {
  TokenBatch tb;
  tb.batch = batch;
  tb.seq = seq;
  for (int64_t i = 0; i < batch * seq; ++i)
    tb.ids.push_back(static_cast<int32_t>(splitmix64(static_cast<uint64_t>(i)) % static_cast<uint64_t>(vocab)));
  tb.lengths.assign(static_cast<size_t>(batch), seq);
  return tb;
}

// Greedy decoding timed step by step, as generate() runs it: KV cache,
// logits of the last position only, one token per step after a prompt. The
// per-step median and minimum do not depend on subtracting two noisy totals.
struct DecodeSamples {
  std::vector<double> prefill, steps;  // seconds: the prompt (+ first token), then each later token
};

// One generation of `new_tokens` tokens after a `prompt`-token prompt;
// appends its timings to `out` (null: an untimed warm-up).
inline void decode_once(const GPT2Model& model, int64_t prompt, int64_t new_tokens, DecodeSamples* out) {
  const int64_t C = model.config().n_embd;
  KVCache cache = model.new_cache(1, prompt + new_tokens);
  TokenBatch step = bench_tokens(1, prompt, model.config().vocab_size);
  for (int64_t produced = 0; produced < new_tokens; ++produced) {
    auto t0 = BenchClock::now();
    Tensor h = model.hidden_states(step, &cache);
    const Tensor logits =
        to_device(model.lm_logits_from_hidden(h.view({step.seq, C}).slice_rows(step.seq - 1, step.seq)), Device::CPU);
    const int32_t next = argmax_first(logits.data<float>(), logits.dim(1));
    const double s = seconds_since(t0);
    if (out) (produced == 0 ? out->prefill : out->steps).push_back(s);
    step = TokenBatch{1, 1, {next}, {1}};
  }
}

}  // namespace gpt2q::cli
