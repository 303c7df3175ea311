#include "report/paired_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/splitmix64.h"

namespace gpt2q::report {

double prediction_agreement(std::span<const int32_t> a, std::span<const int32_t> b) {
  if (a.size() != b.size() || a.empty())
    fail("agreement: prediction lists of {} and {} samples (need the same, non-zero length)", a.size(), b.size());
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / static_cast<double>(a.size());
}

McNemar mcnemar_exact(std::span<const int32_t> labels, std::span<const int32_t> baseline,
                      std::span<const int32_t> candidate) {
  if (labels.size() != baseline.size() || labels.size() != candidate.size())
    fail("McNemar: {} labels, {} and {} predictions (need the same count)", labels.size(), baseline.size(),
         candidate.size());
  McNemar m;
  for (size_t i = 0; i < labels.size(); ++i) {
    const bool base_ok = baseline[i] == labels[i], cand_ok = candidate[i] == labels[i];
    m.b += base_ok && !cand_ok;
    m.c += cand_ok && !base_ok;
  }
  const int64_t n = m.b + m.c, k = std::min(m.b, m.c);
  if (n == 0) return m;
  // P[X <= k] summed in log space: C(n, i) 2^-n = exp(lgamma terms - n ln 2).
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  m.p_value = std::min(1.0, 2.0 * tail);
  return m;
}

PairedDifference paired_difference(std::span<const double> baseline, std::span<const double> candidate) {
  if (baseline.size() != candidate.size() || baseline.size() < 2)
    fail("paired difference: {} and {} values (need the same count, at least 2)", baseline.size(), candidate.size());
  PairedDifference r;
  r.n = static_cast<int64_t>(baseline.size());
  double sum = 0;
  for (size_t i = 0; i < baseline.size(); ++i) sum += candidate[i] - baseline[i];
  r.mean = sum / static_cast<double>(r.n);
  double ss = 0;
  for (size_t i = 0; i < baseline.size(); ++i) {
    const double d = candidate[i] - baseline[i] - r.mean;
    ss += d * d;
  }
  r.se = std::sqrt(ss / static_cast<double>(r.n - 1) / static_cast<double>(r.n));
  if (r.se > 0)
    r.p_value = std::erfc(std::abs(r.mean / r.se) / std::sqrt(2.0));
  else
    r.p_value = r.mean == 0 ? 1.0 : 0.0;
  return r;
}

namespace {

// Macro-F1 from per-class counts, summed over classes in order as
// compute_classification_metrics does.
double macro_f1_of(const std::vector<int64_t>& tp, const std::vector<int64_t>& fp, const std::vector<int64_t>& fn) {
  double sum = 0;
  for (size_t c = 0; c < tp.size(); ++c) {
    const int64_t den = 2 * tp[c] + fp[c] + fn[c];
    sum += den > 0 ? 2.0 * static_cast<double>(tp[c]) / static_cast<double>(den) : 0.0;
  }
  return sum / static_cast<double>(tp.size());
}

// numpy.percentile(x, q), linear method, of a sorted vector.
double percentile_sorted(const std::vector<double>& x, double q) {
  const double pos = q / 100.0 * static_cast<double>(x.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, x.size() - 1);
  return x[lo] + (x[hi] - x[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

Interval paired_bootstrap_macro_f1_delta(std::span<const int32_t> labels, std::span<const int32_t> baseline,
                                         std::span<const int32_t> candidate, int64_t num_classes, int resamples,
                                         uint64_t seed) {
  const size_t n = labels.size();
  if (baseline.size() != n || candidate.size() != n || n < 2)
    fail("bootstrap: {} labels, {} and {} predictions (need the same count, at least 2)", n, baseline.size(),
         candidate.size());
  if (num_classes < 1 || resamples < 1) fail("bootstrap: {} classes, {} resamples", num_classes, resamples);
  for (size_t i = 0; i < n; ++i)
    for (int32_t v : {labels[i], baseline[i], candidate[i]})
      if (v < 0 || v >= num_classes) fail("bootstrap: class {} at sample {} is outside 0..{}", v, i, num_classes - 1);
  const size_t K = static_cast<size_t>(num_classes);
  std::vector<double> deltas(static_cast<size_t>(resamples));
  std::vector<int64_t> tp[2], fp[2], fn[2];
  uint64_t draw = 0;
  for (int r = 0; r < resamples; ++r) {
    for (int v = 0; v < 2; ++v) {
      tp[v].assign(K, 0);
      fp[v].assign(K, 0);
      fn[v].assign(K, 0);
    }
    for (size_t k = 0; k < n; ++k) {
      const size_t i = static_cast<size_t>(splitmix64(seed + draw++) % n);
      const auto y = static_cast<size_t>(labels[i]);
      for (int v = 0; v < 2; ++v) {
        const auto p = static_cast<size_t>(v == 0 ? baseline[i] : candidate[i]);
        if (p == y) {
          ++tp[v][y];
        } else {
          ++fp[v][p];
          ++fn[v][y];
        }
      }
    }
    deltas[static_cast<size_t>(r)] = macro_f1_of(tp[1], fp[1], fn[1]) - macro_f1_of(tp[0], fp[0], fn[0]);
  }
  std::sort(deltas.begin(), deltas.end());
  return {percentile_sorted(deltas, 2.5), percentile_sorted(deltas, 97.5)};
}

double ratio_or_zero(double baseline, double candidate) { return candidate > 0 ? baseline / candidate : 0.0; }

double memory_reduction(size_t baseline_bytes, size_t candidate_bytes) {
  if (baseline_bytes == 0) return 0;
  return 1.0 - static_cast<double>(candidate_bytes) / static_cast<double>(baseline_bytes);
}

bool intervals_overlap(const Interval& a, const Interval& b) { return a.low <= b.high && b.low <= a.high; }

}  // namespace gpt2q::report
