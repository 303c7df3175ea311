#include "eval/divergence.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "eval/classify.h"
#include "eval/perplexity.h"
#include "model/gpt2.h"

namespace gpt2q {

namespace {
size_t argmax(const float* row, int64_t n) { return static_cast<size_t>(std::max_element(row, row + n) - row); }
}  // namespace

void log_softmax(const float* row, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  const double mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int64_t v = 0; v < n; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t v = 0; v < n; ++v) out[v] = static_cast<double>(row[v]) - lse;
}

Divergence divergence(const float* ref, const float* cand, int64_t n, int64_t target) {
  thread_local std::vector<double> lr, lc;
  log_softmax(ref, n, lr);
  log_softmax(cand, n, lc);
  Divergence d;
  for (int64_t v = 0; v < n; ++v) d.kl += std::exp(lr[v]) * (lr[v] - lc[v]);
  d.kl = std::max(0.0, d.kl);  // exact KL is >= 0; rounding can leave -1e-17
  d.same_top1 = argmax(ref, n) == argmax(cand, n);
  if (target >= 0) {
    d.nll_ref = -lr[target];
    d.nll_cand = -lc[target];
  }
  return d;
}

std::vector<Divergence> row_divergences(std::span<const float> ref_logits, std::span<const float> cand_logits,
                                        int64_t num_classes) {
  if (num_classes < 1 || ref_logits.size() != cand_logits.size() ||
      ref_logits.size() % static_cast<size_t>(num_classes) != 0)
    fail("divergence: logits of {} and {} values do not form rows of {} classes", ref_logits.size(),
         cand_logits.size(), num_classes);
  const size_t rows = ref_logits.size() / static_cast<size_t>(num_classes);
  std::vector<Divergence> out(rows);
  for (size_t i = 0; i < rows; ++i)
    out[i] = divergence(ref_logits.data() + i * num_classes, cand_logits.data() + i * num_classes, num_classes, -1);
  return out;
}

std::vector<Divergence> text_divergences(const GPT2Model& ref, const GPT2Model& cand, const std::vector<int32_t>& ids,
                                         int64_t max_length, int64_t stride, std::vector<double>* cand_seconds) {
  const int64_t V = ref.config().vocab_size;
  std::vector<Divergence> out;
  for (const auto& w : perplexity_windows(static_cast<int64_t>(ids.size()), max_length, stride)) {
    if (w.scored() <= 0) continue;
    TokenBatch tb;
    tb.batch = 1;
    tb.seq = w.end - w.begin;
    tb.ids.assign(ids.begin() + w.begin, ids.begin() + w.end);
    const Tensor lr = to_device(ref.lm_logits(tb), Device::CPU);
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor lc = to_device(cand.lm_logits(tb), Device::CPU);
    if (cand_seconds)
      cand_seconds->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    const size_t first = out.size();
    out.resize(first + static_cast<size_t>(w.scored()));
#pragma omp parallel for schedule(static)
    for (int64_t p = w.score_begin; p < w.end; ++p) {
      const int64_t row = p - 1 - w.begin;  // the logits that predict position p
      out[first + (p - w.score_begin)] = divergence(lr.data<float>() + row * V, lc.data<float>() + row * V, V, ids[p]);
    }
  }
  return out;
}

DivergenceSummary summarize_divergences(const std::vector<Divergence>& d) {
  if (d.empty()) fail("divergence: no distributions to summarize");
  DivergenceSummary s;
  std::vector<double> kl;
  kl.reserve(d.size());
  double sum = 0;
  int64_t same = 0;
  for (const auto& x : d) {
    kl.push_back(x.kl);
    sum += x.kl;
    same += x.same_top1;
  }
  s.count = static_cast<int64_t>(d.size());
  s.kl_mean = sum / static_cast<double>(d.size());
  s.kl_median = percentile(kl, 50);
  s.kl_p90 = percentile(kl, 90);
  s.kl_p99 = percentile(kl, 99);
  s.kl_max = *std::max_element(kl.begin(), kl.end());
  s.top1_agreement = static_cast<double>(same) / static_cast<double>(d.size());
  return s;
}

}  // namespace gpt2q
