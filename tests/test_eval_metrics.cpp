// Classification metrics: against scikit-learn / statsmodels fixtures
// (tools/make_metrics_fixtures.py) and against a straightforward per-class
// recount written here from the textbook definitions.
#include <cmath>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/metrics.h"
#include "support/test_env.h"

namespace gpt2q {
namespace {

nlohmann::json load_cases() {
  std::ifstream in(test::fixtures_dir() / "eval" / "metrics_cases.json");
  EXPECT_TRUE(in.good()) << "missing tests/fixtures/eval/metrics_cases.json";
  return nlohmann::json::parse(in)["cases"];
}

TEST(EvalMetrics, MatchesSklearnFixtures) {
  auto cases = load_cases();
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto y_true = c["y_true"].get<std::vector<int32_t>>();
    auto y_pred = c["y_pred"].get<std::vector<int32_t>>();
    int64_t k = c["num_classes"].get<int64_t>();
    auto m = compute_classification_metrics(y_true, y_pred, k);
    EXPECT_EQ(m.n, static_cast<int64_t>(y_true.size()));
    EXPECT_EQ(m.confusion, c["confusion_matrix"].get<std::vector<std::vector<int64_t>>>());
    EXPECT_NEAR(m.accuracy, c["accuracy"].get<double>(), 1e-15);
    EXPECT_NEAR(m.accuracy_ci95.low, c["accuracy_ci95"][0].get<double>(), 1e-14);
    EXPECT_NEAR(m.accuracy_ci95.high, c["accuracy_ci95"][1].get<double>(), 1e-14);
    ASSERT_EQ(m.per_class.size(), static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) {
      EXPECT_NEAR(m.per_class[i].precision, c["precision"][i].get<double>(), 1e-15) << "class " << i;
      EXPECT_NEAR(m.per_class[i].recall, c["recall"][i].get<double>(), 1e-15) << "class " << i;
      EXPECT_NEAR(m.per_class[i].f1, c["f1"][i].get<double>(), 1e-15) << "class " << i;
      EXPECT_EQ(m.per_class[i].support, c["support"][i].get<int64_t>()) << "class " << i;
    }
    EXPECT_NEAR(m.macro_precision, c["macro_precision"].get<double>(), 1e-15);
    EXPECT_NEAR(m.macro_recall, c["macro_recall"].get<double>(), 1e-15);
    EXPECT_NEAR(m.macro_f1, c["macro_f1"].get<double>(), 1e-15);
  }
}

// Recount from the definitions: one pass per class over the raw labels.
TEST(EvalMetrics, MatchesStraightforwardRecountOnRandomLabels) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    int k = 1 + static_cast<int>(rng() % 6);
    int n = 1 + static_cast<int>(rng() % 300);
    std::vector<int32_t> y_true(n), y_pred(n);
    for (int i = 0; i < n; ++i) {
      y_true[i] = static_cast<int32_t>(rng() % k);
      y_pred[i] = rng() % 3 == 0 ? static_cast<int32_t>(rng() % k) : y_true[i];
    }
    auto m = compute_classification_metrics(y_true, y_pred, k);
    int correct = 0;
    for (int i = 0; i < n; ++i) correct += y_true[i] == y_pred[i];
    EXPECT_DOUBLE_EQ(m.accuracy, double(correct) / n);
    double mp = 0, mr = 0, mf = 0;
    for (int c = 0; c < k; ++c) {
      int tp = 0, fp = 0, fn = 0, tn = 0;
      for (int i = 0; i < n; ++i) {
        bool t = y_true[i] == c, p = y_pred[i] == c;
        tp += t && p;
        fp += !t && p;
        fn += t && !p;
        tn += !t && !p;
      }
      double prec = tp + fp ? double(tp) / (tp + fp) : 0.0;
      double rec = tp + fn ? double(tp) / (tp + fn) : 0.0;
      double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0.0;
      const auto& s = m.per_class[c];
      EXPECT_EQ(s.tp, tp);
      EXPECT_EQ(s.fp, fp);
      EXPECT_EQ(s.fn, fn);
      EXPECT_EQ(s.tn, tn);
      EXPECT_EQ(s.support, tp + fn);
      EXPECT_DOUBLE_EQ(s.precision, prec);
      EXPECT_DOUBLE_EQ(s.recall, rec);
      EXPECT_NEAR(s.f1, f1, 1e-15);
      EXPECT_DOUBLE_EQ(s.accuracy, double(tp + tn) / n);
      for (int j = 0; j < k; ++j) {
        int count = 0;
        for (int i = 0; i < n; ++i) count += y_true[i] == c && y_pred[i] == j;
        EXPECT_EQ(m.confusion[c][j], count);
      }
      mp += prec;
      mr += rec;
      mf += f1;
    }
    EXPECT_NEAR(m.macro_precision, mp / k, 1e-15);
    EXPECT_NEAR(m.macro_recall, mr / k, 1e-15);
    EXPECT_NEAR(m.macro_f1, mf / k, 1e-15);
  }
}

TEST(EvalMetrics, ZeroDivisionGivesZeroAndCountsInMacro) {
  // Class 2 never predicted, class 3 neither true nor predicted.
  std::vector<int32_t> t{0, 1, 2, 2}, p{0, 1, 1, 1};
  auto m = compute_classification_metrics(t, p, 4);
  EXPECT_EQ(m.per_class[2].precision, 0.0);
  EXPECT_EQ(m.per_class[2].recall, 0.0);
  EXPECT_EQ(m.per_class[2].f1, 0.0);
  EXPECT_EQ(m.per_class[3].precision, 0.0);
  EXPECT_EQ(m.per_class[3].recall, 0.0);
  EXPECT_EQ(m.per_class[3].f1, 0.0);
  EXPECT_EQ(m.per_class[3].support, 0);
  EXPECT_DOUBLE_EQ(m.per_class[1].precision, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.macro_precision, (1.0 + 1.0 / 3.0) / 4.0);
  EXPECT_DOUBLE_EQ(m.macro_recall, (1.0 + 1.0) / 4.0);
}

TEST(EvalMetrics, WilsonIntervalProperties) {
  // Independent closed form: the interval ends are the roots in p0 of
  // (k/n - p0)^2 = z^2 p0 (1 - p0) / n.
  for (auto [k, n] : {std::pair<int64_t, int64_t>{0, 10}, {3, 10}, {10, 10}, {7600 * 9 / 10, 7600}, {1, 1}}) {
    auto ci = wilson_interval(k, n);
    double p = double(k) / n, z = kZ95;
    for (double root : {ci.low, ci.high}) {
      if (root <= 0.0 || root >= 1.0) continue;  // clipped end (k = 0 or k = n)
      double lhs = (p - root) * (p - root), rhs = z * z * root * (1 - root) / n;
      EXPECT_NEAR(lhs, rhs, 1e-12) << k << "/" << n;
    }
    EXPECT_LE(ci.low, p);
    EXPECT_GE(ci.high, p);
    EXPECT_GE(ci.low, 0.0);
    EXPECT_LE(ci.high, 1.0);
  }
  EXPECT_NEAR(wilson_interval(0, 10).low, 0.0, 1e-15);
  EXPECT_NEAR(wilson_interval(10, 10).high, 1.0, 1e-15);
  EXPECT_GT(wilson_interval(10, 10).low, 0.5);
}

TEST(EvalMetrics, BadInputIsAnError) {
  std::vector<int32_t> a{0, 1}, b{0}, bad{0, 4}, neg{0, -1};
  EXPECT_THROW(compute_classification_metrics(a, b, 2), Error);
  EXPECT_THROW(compute_classification_metrics(a, bad, 4), Error);
  EXPECT_THROW(compute_classification_metrics(neg, a, 2), Error);
  EXPECT_THROW(compute_classification_metrics({}, {}, 2), Error);
  EXPECT_THROW(wilson_interval(1, 0), Error);
}

TEST(EvalMetrics, JsonHasTheDocumentedKeys) {
  std::vector<int32_t> t{0, 1, 1}, p{0, 1, 0};
  auto j = metrics_to_json(compute_classification_metrics(t, p, 2), {"neg", "pos"});
  for (const char* key : {"n", "accuracy", "accuracy_ci95", "macro_precision", "macro_recall", "macro_f1", "per_class",
                          "confusion_matrix"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["per_class"][1]["label"], "pos");
  EXPECT_EQ(j["per_class"][1]["support"], 2);
  EXPECT_EQ(j["confusion_matrix"], nlohmann::json({{1, 0}, {1, 1}}));
}

}  // namespace
}  // namespace gpt2q
