#include "report/paired_stats.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

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

double ratio_or_zero(double baseline, double candidate) { return candidate > 0 ? baseline / candidate : 0.0; }

double memory_reduction(size_t baseline_bytes, size_t candidate_bytes) {
  if (baseline_bytes == 0) return 0;
  return 1.0 - static_cast<double>(candidate_bytes) / static_cast<double>(baseline_bytes);
}

bool intervals_overlap(const Interval& a, const Interval& b) { return a.low <= b.high && b.low <= a.high; }

}  // namespace gpt2q::report
