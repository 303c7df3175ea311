#pragma once
// Classification metrics with scikit-learn's definitions, so that our numbers
// equal sklearn.metrics.{confusion_matrix, accuracy_score,
// precision_recall_fscore_support(labels=range(K), zero_division=0)}:
//   precision_c = TP / (TP + FP), 0 when the class is never predicted;
//   recall_c    = TP / (TP + FN), 0 when the class has no true samples;
//   F1_c        = 2·TP / (2·TP + FP + FN), 0 when that denominator is 0
//                 (equal to 2PR/(P+R), and 0 when P + R = 0);
//   macro_*     = plain mean over all K classes, classes with zero support
//                 included (sklearn average='macro' with labels=range(K)).
// The accuracy's 95% confidence interval is the Wilson score interval.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpt2q {

struct ClassStats {
  int64_t support = 0;    // true samples of the class (TP + FN)
  int64_t predicted = 0;  // samples predicted as the class (TP + FP)
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
  double precision = 0, recall = 0, f1 = 0;
  double accuracy = 0;  // one-vs-rest: (TP + TN) / n
};

struct Interval {
  double low = 0, high = 0;
};

struct ClassificationMetrics {
  int64_t n = 0, num_classes = 0, correct = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][pred]
  double accuracy = 0;
  Interval accuracy_ci95;
  std::vector<ClassStats> per_class;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
};

// Labels must lie in [0, num_classes) and both spans have the same, non-zero
// length (Error otherwise).
ClassificationMetrics compute_classification_metrics(std::span<const int32_t> y_true, std::span<const int32_t> y_pred,
                                                     int64_t num_classes);

// Wilson score interval for a binomial proportion successes/n (n > 0):
//   p = k/n, centre = (p + z²/2n) / (1 + z²/n),
//   half = z/(1 + z²/n) · sqrt(p(1-p)/n + z²/4n²).
// z defaults to the two-sided 95% normal quantile. Same as statsmodels
// proportion_confint(k, n, alpha=0.05, method="wilson").
inline constexpr double kZ95 = 1.959963984540054;
Interval wilson_interval(int64_t successes, int64_t n, double z = kZ95);

// {"n", "accuracy", "accuracy_ci95": [low, high], "macro_precision",
//  "macro_recall", "macro_f1", "per_class": [{"label", "precision", "recall",
//  "f1", "support", "accuracy"}], "confusion_matrix": [[...]] (rows = true)}.
// class_names may be empty (labels are then the class indices as strings).
nlohmann::json metrics_to_json(const ClassificationMetrics& m, const std::vector<std::string>& class_names);

}  // namespace gpt2q
