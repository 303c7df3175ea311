// What compare adds on top of eval/metrics (already checked against sklearn):
// agreement, McNemar's exact test, KL of class distributions, compression,
// memory reduction and speedup — each against an independent computation
// written here (long double, direct formulas), including zero-division cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/splitmix64.h"
#include "report/compare_results.h"
#include "report/paired_stats.h"

namespace gpt2q::report {
namespace {

using Real = long double;

// Two-sided exact McNemar p from first principles: C(n, i) by products.
Real mcnemar_reference(int64_t b, int64_t c) {
  const int64_t n = b + c, k = std::min(b, c);
  if (n == 0) return 1;
  Real tail = 0;
  for (int64_t i = 0; i <= k; ++i) {
    Real comb = 1;
    for (int64_t j = 1; j <= i; ++j) comb = comb * static_cast<Real>(n - i + j) / static_cast<Real>(j);
    tail += comb * std::pow(static_cast<Real>(0.5), static_cast<Real>(n));
  }
  return std::min<Real>(1, 2 * tail);
}

TEST(PairedStats, McNemarKnownValues) {
  // b = 10, c = 2: 2 · (1 + 12 + 66) / 4096, statsmodels mcnemar(exact=True) gives 0.03857421875.
  std::vector<int32_t> y(12, 0), base(12, 0), cand(12, 0);
  for (int i = 0; i < 10; ++i) cand[i] = 1;  // base right, cand wrong
  for (int i = 10; i < 12; ++i) base[i] = 1;  // base wrong, cand right
  const auto m = mcnemar_exact(y, base, cand);
  EXPECT_EQ(m.b, 10);
  EXPECT_EQ(m.c, 2);
  EXPECT_NEAR(m.p_value, 0.03857421875, 1e-15);
}

TEST(PairedStats, McNemarAgainstReference) {
  for (int64_t b : {0, 1, 3, 7, 20, 60})
    for (int64_t c : {0, 1, 2, 9, 20, 75}) {
      std::vector<int32_t> y, base, cand;
      for (int64_t i = 0; i < b; ++i) y.push_back(0), base.push_back(0), cand.push_back(1);
      for (int64_t i = 0; i < c; ++i) y.push_back(0), base.push_back(2), cand.push_back(0);
      for (int i = 0; i < 5; ++i) y.push_back(1), base.push_back(1), cand.push_back(1);  // both right
      for (int i = 0; i < 4; ++i) y.push_back(1), base.push_back(0), cand.push_back(2);  // both wrong
      const auto m = mcnemar_exact(y, base, cand);
      EXPECT_EQ(m.b, b);
      EXPECT_EQ(m.c, c);
      EXPECT_NEAR(m.p_value, static_cast<double>(mcnemar_reference(b, c)), 1e-12) << b << " " << c;
    }
}

TEST(PairedStats, AgreementCountsEqualPredictions) {
  const std::vector<int32_t> a{0, 1, 2, 3, 1}, b{0, 2, 2, 3, 0};
  EXPECT_DOUBLE_EQ(prediction_agreement(a, b), 3.0 / 5.0);
  EXPECT_DOUBLE_EQ(prediction_agreement(a, a), 1.0);
  EXPECT_THROW(prediction_agreement({}, {}), Error);
  EXPECT_THROW(prediction_agreement(a, std::vector<int32_t>{1}), Error);
}

TEST(PairedStats, RatiosAndZeroDivision) {
  EXPECT_DOUBLE_EQ(ratio_or_zero(400.0, 100.0), 4.0);
  EXPECT_DOUBLE_EQ(ratio_or_zero(400.0, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(memory_reduction(1000, 250), 0.75);
  EXPECT_DOUBLE_EQ(memory_reduction(0, 250), 0.0);
  EXPECT_DOUBLE_EQ(memory_reduction(1000, 2000), -1.0);
  EXPECT_TRUE(intervals_overlap({0.1, 0.3}, {0.3, 0.5}));
  EXPECT_FALSE(intervals_overlap({0.1, 0.29}, {0.3, 0.5}));
  EXPECT_DOUBLE_EQ(to_mb(2'500'000), 2.5);
  EXPECT_DOUBLE_EQ(to_mib(3 * 1048576), 3.0);
}

// Hand-made measurements: 3 classes, class 2 absent from the labels, the
// candidate never predicts class 1 (precision 0/0 -> 0 as sklearn's zero_division=0).
CompareResults hand_made() {
  CompareResults r;
  r.run.labels = {0, 0, 1, 1, 0, 1};
  r.run.class_names = {"a", "b", "c"};
  VariantMeasurement base, cand;
  base.name = "fp32";
  base.weight_bytes = 1200;
  base.latency.mean_ms = 2.0;
  base.predictions = {0, 0, 1, 1, 1, 2};
  base.logits = {3, 1, 0, 2, 1, 0, 0, 4, 1, 0, 2, 1, 0, 3, 2, 0, 1, 5};
  base.num_labels = 3;
  cand = base;
  cand.name = "nf4";
  cand.weight_bytes = 300;
  cand.latency.mean_ms = 4.0;
  cand.predictions = {0, 2, 0, 2, 0, 0};
  cand.logits = {2, 1, 0, 1, 1, 3, 2, 1, 1, 0, 1, 2, 3, 1, 2, 4, 1, 1};
  r.variants = {base, cand};
  return r;
}

Real kl_reference(const float* p, const float* q, int n) {
  Real mp = p[0], mq = q[0];
  for (int i = 1; i < n; ++i) mp = std::max<Real>(mp, p[i]), mq = std::max<Real>(mq, q[i]);
  Real sp = 0, sq = 0;
  for (int i = 0; i < n; ++i) sp += std::exp(p[i] - mp), sq += std::exp(q[i] - mq);
  Real kl = 0;
  for (int i = 0; i < n; ++i) {
    const Real lp = p[i] - mp - std::log(sp), lq = q[i] - mq - std::log(sq);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

TEST(CompareComparisons, AgainstIndependentComputation) {
  CompareResults r = hand_made();
  compute_comparisons(r);
  const auto& c = r.comparisons[1];
  EXPECT_DOUBLE_EQ(c.compression_ratio, 4.0);
  EXPECT_DOUBLE_EQ(c.memory_reduction, 0.75);
  EXPECT_DOUBLE_EQ(c.speedup, 0.5);
  EXPECT_DOUBLE_EQ(r.comparisons[0].compression_ratio, 1.0);
  EXPECT_DOUBLE_EQ(r.comparisons[0].speedup, 1.0);
  // Agreement: positions 0 only -> 1/6.
  EXPECT_DOUBLE_EQ(c.agreement, 1.0 / 6.0);
  // Accuracy: base right at 0,1,2,3 (4/6); cand right at 0,4 (2/6).
  EXPECT_DOUBLE_EQ(r.comparisons[0].metrics->accuracy, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(c.metrics->accuracy, 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(c.delta_accuracy, 2.0 / 6.0 - 4.0 / 6.0);
  EXPECT_EQ(c.mcnemar->b, 3);  // base right, cand wrong: 1, 2, 3
  EXPECT_EQ(c.mcnemar->c, 1);  // cand right, base wrong: 4
  EXPECT_NEAR(c.mcnemar->p_value, static_cast<double>(mcnemar_reference(3, 1)), 1e-12);
  // Zero division: class 1 never predicted by cand -> precision 0; class 2 has no support -> recall 0, F1 0.
  const auto& pc = c.metrics->per_class;
  EXPECT_EQ(pc[1].predicted, 0);
  EXPECT_EQ(pc[1].precision, 0.0);
  EXPECT_EQ(pc[1].recall, 0.0);
  EXPECT_EQ(pc[2].support, 0);
  EXPECT_EQ(pc[2].recall, 0.0);
  EXPECT_EQ(pc[2].f1, 0.0);
  // Class 0: TP 2 (0, 4), FP 2 (2, 5), FN 1 (1): P 1/2, R 2/3, F1 4/7.
  EXPECT_DOUBLE_EQ(pc[0].precision, 0.5);
  EXPECT_DOUBLE_EQ(pc[0].recall, 2.0 / 3.0);
  EXPECT_NEAR(pc[0].f1, 4.0 / 7.0, 1e-15);
  EXPECT_NEAR(c.metrics->macro_f1, (4.0 / 7.0) / 3.0, 1e-15);
  // KL: mean, median, max against the reference.
  std::vector<Real> kls;
  for (size_t i = 0; i < 6; ++i)
    kls.push_back(kl_reference(&r.variants[0].logits[i * 3], &r.variants[1].logits[i * 3], 3));
  Real mean = 0;
  for (Real k : kls) mean += k;
  mean /= 6;
  std::sort(kls.begin(), kls.end());
  EXPECT_NEAR(c.divergence->kl_mean, static_cast<double>(mean), 1e-12);
  EXPECT_NEAR(c.divergence->kl_median, static_cast<double>((kls[2] + kls[3]) / 2), 1e-12);
  EXPECT_NEAR(c.divergence->kl_max, static_cast<double>(kls[5]), 1e-12);
  // p90 with numpy's linear interpolation: position 0.9 * 5 = 4.5.
  EXPECT_NEAR(c.divergence->kl_p90, static_cast<double>(kls[4] + (kls[5] - kls[4]) / 2), 1e-12);
  EXPECT_NEAR(r.comparisons[0].divergence->kl_mean, 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(r.comparisons[0].agreement, 1.0);
}

TEST(CompareComparisons, ZeroLatencyAndZeroBytesDoNotDivide) {
  CompareResults r = hand_made();
  r.variants[1].latency.mean_ms = 0;
  r.variants[1].weight_bytes = 0;
  compute_comparisons(r);
  EXPECT_EQ(r.comparisons[1].speedup, 0.0);
  EXPECT_EQ(r.comparisons[1].compression_ratio, 0.0);
  EXPECT_DOUBLE_EQ(r.comparisons[1].memory_reduction, 1.0);
}

}  // namespace
}  // namespace gpt2q::report

namespace gpt2q::report {
namespace {

TEST(PairedStats, PairedDifferenceAgainstReference) {
  const std::vector<double> a{2.0, 3.5, 1.25, 4.0, 2.75, 3.0}, b{2.5, 3.25, 1.75, 4.5, 3.0, 3.5};
  Real mean = 0;
  for (size_t i = 0; i < a.size(); ++i) mean += static_cast<Real>(b[i]) - a[i];
  mean /= a.size();
  Real ss = 0;
  for (size_t i = 0; i < a.size(); ++i) ss += (b[i] - a[i] - mean) * (b[i] - a[i] - mean);
  const Real se = std::sqrt(ss / (a.size() - 1) / a.size());
  const Real p = std::erfc(std::fabs(mean / se) / std::sqrt(2.0L));
  const auto d = paired_difference(a, b);
  EXPECT_EQ(d.n, 6);
  EXPECT_NEAR(d.mean, static_cast<double>(mean), 1e-15);
  EXPECT_NEAR(d.se, static_cast<double>(se), 1e-15);
  EXPECT_NEAR(d.p_value, static_cast<double>(p), 1e-12);
  // Zero spread: equal losses -> p = 1; a constant shift -> p = 0.
  EXPECT_EQ(paired_difference(a, a).p_value, 1.0);
  std::vector<double> shifted = a;
  for (double& x : shifted) x += 0.5;
  EXPECT_EQ(paired_difference(a, shifted).p_value, 0.0);
  EXPECT_THROW(paired_difference(std::vector<double>{1.0}, std::vector<double>{1.0}), Error);
}

// The bootstrap interval of Δ macro-F1 against an independent version: the
// same documented draws, each resample scored by compute_classification_metrics
// (sklearn's macro-F1) and the percentiles taken as numpy does.
TEST(PairedBootstrap, MatchesTheDefinitionWithSklearnMacroF1) {
  const int64_t K = 4;
  const size_t n = 300;
  std::vector<int32_t> labels(n), base(n), cand(n);
  for (size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<int32_t>(gpt2q::splitmix64(i) % K);
    base[i] = gpt2q::splitmix64(1000 + i) % 5 == 0 ? static_cast<int32_t>((labels[i] + 1) % K) : labels[i];
    cand[i] = gpt2q::splitmix64(2000 + i) % 4 == 0 ? static_cast<int32_t>((labels[i] + 2) % K) : labels[i];
  }
  const int B = 200;
  const uint64_t seed = 77;
  std::vector<double> d;
  uint64_t draw = 0;
  for (int r = 0; r < B; ++r) {
    std::vector<int32_t> y, b, c;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = gpt2q::splitmix64(seed + draw++) % n;
      y.push_back(labels[i]);
      b.push_back(base[i]);
      c.push_back(cand[i]);
    }
    d.push_back(gpt2q::compute_classification_metrics(y, c, K).macro_f1 -
                gpt2q::compute_classification_metrics(y, b, K).macro_f1);
  }
  std::sort(d.begin(), d.end());
  auto pct = [&](double q) {
    const double pos = q / 100 * (d.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    return d[lo] + (d[std::min(lo + 1, d.size() - 1)] - d[lo]) * (pos - lo);
  };
  const auto got = paired_bootstrap_macro_f1_delta(labels, base, cand, K, B, seed);
  EXPECT_NEAR(got.low, pct(2.5), 1e-12);
  EXPECT_NEAR(got.high, pct(97.5), 1e-12);
  EXPECT_LT(got.low, got.high);
  // Deterministic; identical predictions give exactly [0, 0].
  const auto again = paired_bootstrap_macro_f1_delta(labels, base, cand, K, B, seed);
  EXPECT_EQ(got.low, again.low);
  EXPECT_EQ(got.high, again.high);
  const auto same = paired_bootstrap_macro_f1_delta(labels, base, base, K);
  EXPECT_EQ(same.low, 0.0);
  EXPECT_EQ(same.high, 0.0);
  EXPECT_THROW(paired_bootstrap_macro_f1_delta(labels, base, std::vector<int32_t>(n, 9), K), gpt2q::Error);
}

}  // namespace
}  // namespace gpt2q::report
