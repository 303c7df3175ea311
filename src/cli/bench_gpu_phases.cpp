#include "cli/bench_gpu_phases.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <set>
#include <span>

#include "cli/bench_timing.h"
#include "core/device_graph.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "eval/classify.h"
#include "eval/perplexity.h"
#include "model/gpt2.h"

#ifdef GPT2Q_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gpt2q::cli::gpu_bench {

using nlohmann::json;

namespace {

#ifdef GPT2Q_CUDA
void cuda_check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();
  fail("CUDA: {} failed: {} ({})", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

// A start and a stop event on the calling thread's stream (all gpt2q work is
// queued there: core/device_memory.h).
class EventTimer {
 public:
  EventTimer() {
    cuda_check(cudaEventCreate(&start_), "cudaEventCreate");
    cuda_check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~EventTimer() {
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start() { cuda_check(cudaEventRecord(start_, stream()), "cudaEventRecord"); }
  void stop() { cuda_check(cudaEventRecord(stop_, stream()), "cudaEventRecord"); }
  double elapsed_ms() {
    cuda_check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return ms;
  }

 private:
  static cudaStream_t stream() { return static_cast<cudaStream_t>(cuda_stream()); }
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};
#endif

int32_t argmax_row(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);  // first maximum: torch.argmax
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

}  // namespace

void log_line(const std::string& line) {
  fmt::print(stderr, "bench: {}\n", line);
  std::fflush(stderr);
}

double mean_length(const std::vector<std::vector<int32_t>>& s, size_t n) {
  double t = 0;
  for (size_t i = 0; i < n; ++i) t += double(s[i].size());
  return t / double(n);
}

// Batch 1: each of the first n1 texts alone, at its real length, after
// kBatch1Warmups calls on the first and one on the first text of each length
// bucket (the GPU pads one text to a bucket and replays that bucket's graph).
// A sample's time is wall clock
// (steady_clock) from a device_synchronize before class_logits to its
// logits on the host (the copy waits for the stream): what bench_peers.py
// times (torch.cuda.synchronize + perf_counter), host-side batch building,
// the upload of the ids and the 16-byte download included. The same span is
// also timed with CUDA events on the thread's stream (batch1.event_*).
void run_batch1(const GPT2Model& model, const Data& d, int64_t n1, json& row) {
  std::vector<TokenBatch> in;
  for (int64_t i = 0; i < n1; ++i) {
    const auto& s = d.seqs[static_cast<size_t>(i)];
    const auto len = static_cast<int64_t>(s.size());
    in.push_back(TokenBatch{1, len, s, {len}});
  }
  const int64_t K = model.num_labels();
  for (int w = 0; w < kBatch1Warmups; ++w) (void)to_device(model.class_logits(in[0]), Device::CPU);
  // Then one call per length bucket (gpt2.h classify_bucket) the texts meet:
  // on CUDA the first text of a bucket captures its graph, as the peers'
  // torch.compile warm-up compiles its one padded shape.
  std::set<int64_t> buckets;
  int64_t warmups = kBatch1Warmups;
  for (const TokenBatch& tb : in)
    if (buckets.insert(classify_bucket(tb.seq, model.config().n_positions)).second) {
      (void)to_device(model.class_logits(tb), Device::CPU);
      ++warmups;
    }
  std::vector<double> wall, events;
  std::vector<int32_t> preds;
  const uint64_t replays_before = device_graph_launches();
#ifdef GPT2Q_CUDA
  EventTimer ev;
#endif
  for (const TokenBatch& tb : in) {
    device_synchronize(Device::CUDA);
    const auto t0 = BenchClock::now();
#ifdef GPT2Q_CUDA
    ev.start();
#endif
    const Tensor logits = to_device(model.class_logits(tb), Device::CPU);
#ifdef GPT2Q_CUDA
    ev.stop();
#endif
    wall.push_back(seconds_since(t0) * 1e3);
#ifdef GPT2Q_CUDA
    events.push_back(ev.elapsed_ms());
#endif
    GPT2Q_CHECK(logits.numel() == K, "class_logits gave {}", shape_str(logits.shape()));
    preds.push_back(argmax_row(logits.data<float>(), K));
  }
  json b = {{"n", n1},
            {"mean_ms", mean_of(wall)},
            {"p50_ms", percentile(wall, 50)},
            {"p90_ms", percentile(wall, 90)},
            {"p99_ms", percentile(wall, 99)},
            {"min_ms", minimum(wall)},
            {"max_ms", *std::max_element(wall.begin(), wall.end())},
            {"warmup_calls", warmups},
            {"cuda_graph_replays", device_graph_launches() - replays_before},
            {"tokens_per_sample_mean", mean_length(d.seqs, static_cast<size_t>(n1))},
            {"sequence_length", "real length"},
            {"timing", "wall clock from device_synchronize to the logits on the host, per sample"}};
  if (!events.empty()) {
    b["event_mean_ms"] = mean_of(events);
    b["event_p50_ms"] = percentile(events, 50);
    b["event_timing"] = "CUDA events on the thread's stream around class_logits + the copy to the host";
  }
  row["batch1"] = b;
  row["batch1_ms"] = b["mean_ms"];
  row["batch1_p50_ms"] = b["p50_ms"];
  row["argmax_first_n"] = preds;
  log_line(fmt::format("{}: batch 1: {:.3f} ms/sample (p50 {:.3f}; events {:.3f}) over {} texts",
                       row["setup"].get<std::string>(), b["mean_ms"].get<double>(), b["p50_ms"].get<double>(),
                       events.empty() ? 0.0 : mean_of(events), n1));
}

// Batch 256: the first n256 texts in file order, batches of 256 right-padded
// to their longest text with the pad id eval uses; one warm-up batch (the
// first), then every batch queued back to back and one device_synchronize at
// the end, as bench_peers.py does (logits stay on the device until then);
// then a second, steady-state pass over the same batches (steady_*).
// peak_bytes: the pool's peak of live bytes from just before the warm-up
// (weights included), torch.cuda.max_memory_allocated's counterpart.
void run_batch256(const GPT2Model& model, const Data& d, int64_t n256, json& row) {
  const GPT2Config& cfg = model.config();
  const int32_t pad = static_cast<int32_t>(cfg.pad_token_id.value_or(cfg.eos_token_id.value_or(0)));
  std::vector<TokenBatch> batches;
  int64_t real = 0, padded = 0;
  std::vector<int64_t> lengths;
  for (int64_t b = 0; b < n256; b += kBatch) {
    const auto first = d.seqs.begin() + b, last = d.seqs.begin() + std::min(b + kBatch, n256);
    batches.push_back(TokenBatch::from_sequences(std::vector<std::vector<int32_t>>(first, last), pad));
    for (auto it = first; it != last; ++it) real += static_cast<int64_t>(it->size());
    padded += batches.back().batch * batches.back().seq;
    lengths.push_back(batches.back().seq);
  }
  device_synchronize(Device::CUDA);
  const size_t before = device_memory_stats(Device::CUDA).used;
  reset_device_memory_peak(Device::CUDA);
  const auto tw = BenchClock::now();
  (void)to_device(model.class_logits(batches[0]), Device::CPU);
  const double warm_s = seconds_since(tw);
  std::vector<Tensor> out;
  device_synchronize(Device::CUDA);
  const auto t0 = BenchClock::now();
  for (const TokenBatch& tb : batches) out.push_back(model.class_logits(tb));
  device_synchronize(Device::CUDA);
  const double secs = seconds_since(t0);
  const DeviceMemoryStats st = device_memory_stats(Device::CUDA);
  // The same batches again: every problem has met its GEMM plan and loaded
  // its kernels by now, which the first pass (the peers' method: one warm-up
  // batch) pays for the row counts it meets first. A long eval converges to
  // this rate.
  const auto t1 = BenchClock::now();
  for (const TokenBatch& tb : batches) (void)model.class_logits(tb);
  device_synchronize(Device::CUDA);
  const double steady_secs = seconds_since(t1);
  // Predictions, compared with batch 1's where both ran.
  int64_t same = 0, compared = 0;
  const bool have_b1 = row.contains("argmax_first_n");
  size_t i = 0;
  for (const Tensor& t : out) {
    const Tensor h = to_device(t, Device::CPU);
    const int64_t K = h.dim(1);
    for (int64_t r = 0; r < h.dim(0); ++r, ++i)
      if (have_b1 && i < row["argmax_first_n"].size()) {
        ++compared;
        same += argmax_row(h.data<float>() + r * K, K) == row["argmax_first_n"][i].get<int32_t>();
      }
  }
  json b = {{"samples", n256},
            {"batches", batches.size()},
            {"batch_size", kBatch},
            {"seconds", secs},
            {"samples_per_s", double(n256) / secs},
            {"real_tokens", real},
            {"real_tokens_per_s", double(real) / secs},
            {"padded_tokens", padded},
            {"padded_lengths", lengths},
            {"peak_used_bytes", st.peak_used},
            {"used_before_bytes", before},
            {"peak_over_before_bytes", st.peak_used - before},
            {"peak_reserved_bytes", st.peak_reserved},
            {"warmup_calls", 1},
            {"warmup_seconds", warm_s},
            {"steady_seconds", steady_secs},
            {"steady_samples_per_s", double(n256) / steady_secs},
            {"timing", "wall clock of all batches queued back to back, one device_synchronize at the end"},
            {"steady_timing", "the same, a second pass over the same batches"}};
  if (compared) b["agreement_with_batch1"] = double(same) / double(compared);
  row["batch256"] = b;
  row["batch256_samples_per_s"] = b["samples_per_s"];
  row["peak_bytes"] = st.peak_used;
  log_line(fmt::format("{}: batch {}: {:.0f} samples/s ({} batches; a second pass {:.0f}/s), peak {:.1f} MB",
                       row["setup"].get<std::string>(), kBatch, double(n256) / secs, batches.size(),
                       double(n256) / steady_secs, st.peak_used / 1e6));
}

// Greedy decode, batch 1: generate() (KV cache, logits of the last position,
// one token per step) of kDecodeNew tokens after the prompt, never stopping
// at <|endoftext|>; wall time of the call, prefill included (bench_peers.py:
// model.generate with min_new_tokens). One warm-up of 8 tokens.
void run_decode(const GPT2Model& model, const Data& d, int runs, json& row) {
  GenerateOptions warm;
  warm.max_new_tokens = 8;
  warm.stop_at_eos = false;
  (void)generate(model, d.prompt, warm);
  GenerateOptions opts;
  opts.max_new_tokens = kDecodeNew;
  opts.stop_at_eos = false;
  std::vector<double> secs;
  std::vector<int32_t> first;
  const uint64_t replays_before = device_graph_launches();
  for (int r = 0; r < runs; ++r) {
    device_synchronize(Device::CUDA);
    const auto t0 = BenchClock::now();
    const auto ids = generate(model, d.prompt, opts);
    secs.push_back(seconds_since(t0));
    if (static_cast<int64_t>(ids.size()) != static_cast<int64_t>(d.prompt.size()) + kDecodeNew)
      fail("generate gave {} ids, not {} + {}", ids.size(), d.prompt.size(), kDecodeNew);
    if (r == 0) first.assign(ids.begin() + static_cast<std::ptrdiff_t>(d.prompt.size()), ids.end());
  }
  const double tps = double(kDecodeNew) / median(secs);
  row["decode"] = {{"runs", runs},
                   {"new_tokens", kDecodeNew},
                   {"prompt_tokens", d.prompt.size()},
                   {"seconds", secs},
                   {"tokens_per_s_median", tps},
                   {"tokens_per_s_best", double(kDecodeNew) / minimum(secs)},
                   {"generated_ids", first},
                   {"cuda_graph_replays", device_graph_launches() - replays_before},
                   {"timing", "wall time of generate() (prefill of the prompt included)"}};
  row["decode_tokens_per_s"] = tps;
  log_line(fmt::format("{}: decode: {:.0f} tokens/s (median of {})", row["setup"].get<std::string>(), tps, runs));
}

// WikiText-2 perplexity (evaluate_perplexity: windows of 1024, stride 512,
// exact token count), timed by wall clock around the whole call after a
// device_synchronize; one warm-up call on the first window.
void run_ppl(const GPT2Model& model, const Data& d, int64_t max_windows, json& row) {
  PerplexityOptions o;
  o.max_length = std::min(kPplMaxLength, model.config().n_positions);
  o.stride = std::min(kPplStride, std::max<int64_t>(1, o.max_length / 2));
  o.progress = false;
  std::span<const int32_t> ids(d.wiki);
  const size_t full_windows = perplexity_windows(static_cast<int64_t>(ids.size()), o.max_length, o.stride).size();
  if (max_windows > 0)
    ids = ids.first(std::min(ids.size(), static_cast<size_t>(o.stride * (max_windows - 1) + o.max_length)));
  (void)evaluate_perplexity(model, ids.first(std::min(ids.size(), static_cast<size_t>(o.max_length))), o);
  device_synchronize(Device::CUDA);
  const auto t0 = BenchClock::now();
  const PerplexityResult r = evaluate_perplexity(model, ids, o);
  const double secs = seconds_since(t0);
  row["perplexity"] = {{"seconds", secs},
                       {"forward_seconds", r.seconds},
                       {"ppl", r.ppl},
                       {"nll", r.nll},
                       {"tokens", r.tokens},
                       {"windows", r.windows},
                       {"text_tokens", d.wiki.size()},
                       {"full_pass", static_cast<size_t>(r.windows) == full_windows},
                       {"full_pass_windows", full_windows},
                       {"max_length", r.max_length},
                       {"stride", r.stride},
                       {"timing", "wall clock of evaluate_perplexity (LM head on the scored rows, NLL on the host)"}};
  row["ppl_seconds"] = secs;
  row["ppl"] = r.ppl;
  log_line(fmt::format("{}: perplexity {:.6g} in {:.2f} s ({} windows)", row["setup"].get<std::string>(), r.ppl, secs,
                       r.windows));
}

}  // namespace gpt2q::cli::gpu_bench
