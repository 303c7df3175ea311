// Key findings and recommendations follow from the numbers: change the
// numbers and the statements change (best / smallest / fastest, noise
// verdicts by McNemar, chance level, dominated variants, what to use).
#include <gtest/gtest.h>

#include "report/number_format.h"
#include "test_report_support.h"

namespace gpt2q::report {
namespace {

using test::first_n;
using test::synthetic_results;

const Finding* find_kind(const std::vector<Finding>& f, const std::string& kind) {
  for (const auto& x : f)
    if (x.kind == kind) return &x;
  return nullptr;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Findings, SmallLossWithinNoiseRecommendsTheSmallest) {
  // 400 samples, 4 classes; baseline wrong on 40, int8 on 42, nf4 on 44 (+ overlap): differences within noise.
  auto r = synthetic_results(400, 4,
                             {{"fp32", 4000, 1.0, first_n(0, 40)},
                              {"int8-tensor", 1500, 1.5, first_n(0, 42)},
                              {"nf4", 1000, 2.0, first_n(0, 44)}});
  const auto* best = find_kind(r.findings, "best-accuracy");
  ASSERT_NE(best, nullptr);
  EXPECT_TRUE(contains(best->text, "fp32")) << best->text;
  EXPECT_TRUE(contains(best->text, fmt_pct(360.0 / 400))) << best->text;
  const auto* mem = find_kind(r.findings, "lowest-memory");
  ASSERT_NE(mem, nullptr);
  EXPECT_TRUE(contains(mem->text, "nf4")) << mem->text;
  EXPECT_TRUE(contains(mem->text, fmt_ratio(4.0))) << mem->text;
  const auto* fast = find_kind(r.findings, "fastest");
  ASSERT_NE(fast, nullptr);
  EXPECT_EQ(fast->text.rfind("Fastest: fp32", 0), 0u) << fast->text;
  const auto* noise = find_kind(r.findings, "noise");
  ASSERT_NE(noise, nullptr);
  EXPECT_TRUE(contains(noise->text, "within noise")) << noise->text;
  EXPECT_EQ(find_kind(r.findings, "chance-level"), nullptr);
  // Three variants on the Pareto front (smaller = slower here): a trade-off, nobody dominated.
  EXPECT_NE(find_kind(r.findings, "trade-off"), nullptr);
  EXPECT_EQ(find_kind(r.findings, "dominated"), nullptr);
  const auto* rec = find_kind(r.recommendations, "memory");
  ASSERT_NE(rec, nullptr);
  EXPECT_TRUE(contains(rec->text, "use nf4")) << rec->text;
  const auto* lat = find_kind(r.recommendations, "latency");
  ASSERT_NE(lat, nullptr);
  EXPECT_TRUE(contains(lat->text, "stay with fp32")) << lat->text;
  EXPECT_NE(find_kind(r.recommendations, "samples"), nullptr);  // a non-zero delta within noise
}

TEST(Findings, SignificantLossIsReportedAndNotRecommended) {
  // nf4 gets 60 more samples wrong than the baseline: McNemar p ~ 1e-18.
  auto r = synthetic_results(400, 4,
                             {{"fp32", 4000, 1.0, first_n(0, 20)},
                              {"int8-tensor", 1500, 0.8, first_n(0, 21)},
                              {"nf4", 1000, 0.7, first_n(0, 80)}});
  const auto* noise = find_kind(r.findings, "noise");
  ASSERT_NE(noise, nullptr);
  EXPECT_TRUE(contains(noise->text, "beyond noise")) << noise->text;
  EXPECT_TRUE(contains(noise->text, "nf4 (" + fmt_pp(-60.0 / 400))) << noise->text;
  EXPECT_TRUE(contains(noise->text, "int8-tensor are within noise")) << noise->text;
  const auto* rec = find_kind(r.recommendations, "memory");
  ASSERT_NE(rec, nullptr);
  EXPECT_TRUE(contains(rec->text, "use int8-tensor")) << rec->text;  // nf4 is smaller but loses accuracy
  const auto* lat = find_kind(r.recommendations, "latency");
  ASSERT_NE(lat, nullptr);
  EXPECT_TRUE(contains(lat->text, "use int8-tensor")) << lat->text;  // nf4 is faster but loses accuracy
  // fp32 is bigger and slower than int8-tensor and only 1 sample better: not dominated (more accurate).
  EXPECT_EQ(find_kind(r.findings, "dominated"), nullptr);
}

TEST(Findings, DominatedVariantIsNamedAndAvoided) {
  auto r = synthetic_results(200, 4,
                             {{"fp32", 4000, 1.0, first_n(0, 10)},
                              {"llm-int8", 2000, 3.0, first_n(0, 12)},
                              {"nf4", 1000, 2.0, first_n(0, 10)}});
  const auto* dom = find_kind(r.findings, "dominated");
  ASSERT_NE(dom, nullptr);
  EXPECT_EQ(dom->text.rfind("llm-int8 is dominated by nf4", 0), 0u) << dom->text;
  const auto* avoid = find_kind(r.recommendations, "avoid");
  ASSERT_NE(avoid, nullptr);
  EXPECT_EQ(avoid->text.rfind("Avoid llm-int8: nf4 needs no more memory", 0), 0u) << avoid->text;
}

TEST(Findings, ChanceLevelIsDetected) {
  // 4 balanced classes, 75% wrong: accuracy 25% = the uniform rate.
  std::vector<size_t> wrong;
  for (size_t i = 0; i < 200; ++i)
    if (i % 4 != 0) wrong.push_back(i);
  auto r = synthetic_results(200, 4, {{"fp32", 4000, 1.0, wrong}, {"nf4", 1000, 1.0, wrong, 1.5f}});
  const auto* chance = find_kind(r.findings, "chance-level");
  ASSERT_NE(chance, nullptr);
  EXPECT_TRUE(contains(chance->text, "25.00%")) << chance->text;
  const auto* model = find_kind(r.recommendations, "model");
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(contains(model->text, "nf4")) << model->text;
}

TEST(Findings, DeltaStatementsCarryTheNumbers) {
  auto r = synthetic_results(100, 4, {{"fp32", 4000, 1.0, first_n(0, 10)}, {"nf4", 1000, 2.0, first_n(0, 15)}});
  const auto* d = find_kind(r.findings, "delta");
  ASSERT_NE(d, nullptr);
  const auto& c = r.comparisons[1];
  EXPECT_TRUE(contains(d->text, fmt_pp(c.delta_accuracy))) << d->text;
  EXPECT_TRUE(contains(d->text, fmt_p(c.mcnemar->p_value))) << d->text;
  EXPECT_TRUE(contains(d->text, "5 samples turned wrong, 0 turned right")) << d->text;
  EXPECT_TRUE(contains(d->text, fmt_kl(c.divergence->kl_mean))) << d->text;
  EXPECT_TRUE(contains(d->text, "2.00× slower")) << d->text;
}

TEST(Findings, DominanceNeedsOneStrictImprovement) {
  auto r = synthetic_results(40, 4, {{"a", 100, 1.0, {}}, {"b", 100, 1.0, {}}});
  EXPECT_FALSE(dominates(r, 0, 1));
  EXPECT_FALSE(dominates(r, 1, 0));
  r.variants[1].weight_bytes = 99;
  EXPECT_TRUE(dominates(r, 1, 0));
}

}  // namespace
}  // namespace gpt2q::report

namespace gpt2q::report {
namespace {

// LM runs: perplexity and the paired per-token NLL test decide.
TEST(Findings, LanguageModelNoiseAndRecommendation) {
  CompareResults r;
  r.run.task = Task::LanguageModeling;
  auto variant = [](std::string name, size_t bytes, double ms, double ppl, double mean, double p) {
    VariantMeasurement m;
    m.name = std::move(name);
    m.weight_bytes = bytes;
    m.latency.mean_ms = ms;
    m.latency.samples_per_s = 1e3 / ms;
    PerplexityResult pr;
    pr.ppl = ppl;
    pr.tokens = 1000;
    m.perplexity = pr;
    DivergenceSummary d;
    d.kl_mean = mean > 0 ? mean / 10 : 0;
    d.top1_agreement = 0.9;
    m.lm_divergence = d;
    m.lm_nll_difference = PairedDifference{1000, mean, 0.01, p};
    return m;
  };
  r.variants = {variant("fp32", 4000, 1.0, 30.0, 0, 1), variant("int8-tensor", 1500, 1.2, 30.1, 0.003, 0.4),
                variant("nf4", 1000, 1.1, 33.0, 0.09, 1e-9)};
  compute_comparisons(r);
  compute_findings(r);
  const auto* noise = find_kind(r.findings, "noise");
  ASSERT_NE(noise, nullptr);
  EXPECT_TRUE(contains(noise->text, "beyond noise for nf4")) << noise->text;
  EXPECT_TRUE(contains(noise->text, "within noise for int8-tensor")) << noise->text;
  const auto* best = find_kind(r.findings, "best-perplexity");
  ASSERT_NE(best, nullptr);
  EXPECT_TRUE(contains(best->text, "fp32 with 30.0000")) << best->text;
  const auto* rec = find_kind(r.recommendations, "memory");
  ASSERT_NE(rec, nullptr);
  EXPECT_TRUE(contains(rec->text, "use int8-tensor")) << rec->text;  // nf4 is smaller but measurably worse
}

}  // namespace
}  // namespace gpt2q::report

namespace gpt2q::report {
namespace {

TEST(Findings, KeepBaselineWhenEverySmallerVariantLoses) {
  auto r = synthetic_results(400, 4,
                             {{"fp32", 4000, 1.0, {}}, {"nf4", 1000, 0.5, first_n(0, 60)},
                              {"fp4", 1000, 0.5, first_n(0, 80)}});
  const auto* rec = find_kind(r.recommendations, "memory");
  ASSERT_NE(rec, nullptr);
  EXPECT_EQ(rec->text, "Keep fp32 where quality matters: every smaller variant is measurably worse in accuracy "
                       "(the smallest loss is nf4's, " + fmt_pp(-60.0 / 400) + ").");
}

}  // namespace
}  // namespace gpt2q::report
