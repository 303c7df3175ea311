#pragma once
// Statistics `gpt2q compare` adds on top of eval/metrics.h: how a variant
// relates to the baseline, sample by sample and in resources.
#include <cstddef>
#include <cstdint>
#include <span>

#include "eval/metrics.h"

namespace gpt2q::report {

// Fraction of samples where both predict the same class. Error when the
// lengths differ or are 0.
double prediction_agreement(std::span<const int32_t> a, std::span<const int32_t> b);

// McNemar's test on paired predictions against the same labels, exact form
// (statsmodels.stats.contingency_tables.mcnemar(exact=True)):
//   b = samples the baseline gets right and the candidate wrong,
//   c = samples the candidate gets right and the baseline wrong,
//   p = min(1, 2 · P[X <= min(b, c)]) for X ~ Binomial(b + c, 1/2); p = 1 when b + c = 0.
struct McNemar {
  int64_t b = 0, c = 0;
  double p_value = 1;
};
McNemar mcnemar_exact(std::span<const int32_t> labels, std::span<const int32_t> baseline,
                      std::span<const int32_t> candidate);

// Paired difference of per-token losses (LM runs): d_i = candidate_i − baseline_i
// (NLL of the same token, nats). mean = Σd/n, se = sd(d)/√n with the n−1
// sample deviation, z = mean/se and the two-sided normal p = erfc(|z|/√2);
// p = 1 when every d_i is equal to the mean (se 0, mean 0), 0 when se is 0 and
// the mean is not. Tokens of a text are not independent, so p is a guide
// rather than an exact test. Error when the lengths differ or n < 2.
struct PairedDifference {
  int64_t n = 0;
  double mean = 0, se = 0, p_value = 1;
};
PairedDifference paired_difference(std::span<const double> baseline, std::span<const double> candidate);

// 95% percentile-bootstrap interval of Δ macro-F1 = macro_F1(candidate) −
// macro_F1(baseline) on the same samples (paired): `resamples` draws of n
// sample indices with replacement, index = splitmix64(seed + draw) mod n
// (the bias of the modulo is below n / 2^64), the same indices for both
// variants; macro-F1 as eval/metrics.h defines it (sklearn, zero_division=0);
// the interval is the 2.5th and 97.5th percentile of the resampled Δ, with
// linear interpolation between order statistics (numpy.percentile's
// default). Macro-F1 is not a per-sample mean, so no normal interval applies.
// Error when the lengths differ, n < 2 or a label is outside [0, num_classes).
inline constexpr int kBootstrapResamples = 1000;
inline constexpr uint64_t kBootstrapSeed = 20261205;
Interval paired_bootstrap_macro_f1_delta(std::span<const int32_t> labels, std::span<const int32_t> baseline,
                                         std::span<const int32_t> candidate, int64_t num_classes,
                                         int resamples = kBootstrapResamples, uint64_t seed = kBootstrapSeed);

// baseline / candidate; 0 when candidate is 0 (nothing to compare).
double ratio_or_zero(double baseline, double candidate);
// Memory saved against the baseline, as a fraction: 1 - candidate / baseline (0 when baseline is 0).
double memory_reduction(size_t baseline_bytes, size_t candidate_bytes);
// Do two intervals share any point?
bool intervals_overlap(const Interval& a, const Interval& b);

inline double to_mb(size_t bytes) { return static_cast<double>(bytes) / 1e6; }
inline double to_mib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace gpt2q::report
