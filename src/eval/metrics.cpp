#include "eval/metrics.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gpt2q {

namespace {
// sklearn's _prf_divide with zero_division=0.
double divide_or_zero(double num, double den) { return den == 0 ? 0.0 : num / den; }
}  // namespace

ClassificationMetrics compute_classification_metrics(std::span<const int32_t> y_true, std::span<const int32_t> y_pred,
                                                     int64_t num_classes) {
  if (y_true.size() != y_pred.size())
    fail("metrics: {} true labels but {} predictions", y_true.size(), y_pred.size());
  if (y_true.empty()) fail("metrics: no samples");
  if (num_classes < 1) fail("metrics: num_classes must be at least 1 (got {})", num_classes);

  ClassificationMetrics m;
  m.n = static_cast<int64_t>(y_true.size());
  m.num_classes = num_classes;
  m.confusion.assign(num_classes, std::vector<int64_t>(num_classes, 0));
  for (size_t i = 0; i < y_true.size(); ++i) {
    int32_t t = y_true[i], p = y_pred[i];
    if (t < 0 || t >= num_classes) fail("metrics: true label {} at index {} outside [0, {})", t, i, num_classes);
    if (p < 0 || p >= num_classes) fail("metrics: predicted label {} at index {} outside [0, {})", p, i, num_classes);
    ++m.confusion[t][p];
    if (t == p) ++m.correct;
  }
  m.accuracy = static_cast<double>(m.correct) / static_cast<double>(m.n);
  m.accuracy_ci95 = wilson_interval(m.correct, m.n);

  m.per_class.resize(num_classes);
  double sum_p = 0, sum_r = 0, sum_f = 0;
  for (int64_t c = 0; c < num_classes; ++c) {
    ClassStats& s = m.per_class[c];
    s.tp = m.confusion[c][c];
    for (int64_t k = 0; k < num_classes; ++k) {
      s.support += m.confusion[c][k];
      s.predicted += m.confusion[k][c];
    }
    s.fn = s.support - s.tp;
    s.fp = s.predicted - s.tp;
    s.tn = m.n - s.tp - s.fp - s.fn;
    s.precision = divide_or_zero(static_cast<double>(s.tp), static_cast<double>(s.predicted));
    s.recall = divide_or_zero(static_cast<double>(s.tp), static_cast<double>(s.support));
    // sklearn: (1+β²)·TP / (β²·true_sum + pred_sum), β = 1.
    s.f1 = divide_or_zero(2.0 * static_cast<double>(s.tp), static_cast<double>(s.support + s.predicted));
    s.accuracy = static_cast<double>(s.tp + s.tn) / static_cast<double>(m.n);
    sum_p += s.precision;
    sum_r += s.recall;
    sum_f += s.f1;
  }
  const double k = static_cast<double>(num_classes);
  m.macro_precision = sum_p / k;
  m.macro_recall = sum_r / k;
  m.macro_f1 = sum_f / k;
  return m;
}

Interval wilson_interval(int64_t successes, int64_t n, double z) {
  if (n <= 0) fail("wilson_interval: n must be positive (got {})", n);
  if (successes < 0 || successes > n) fail("wilson_interval: {} successes out of {}", successes, n);
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(successes) / nn;
  const double z2 = z * z;
  const double denom = 1.0 + z2 / nn;
  const double centre = (p + z2 / (2.0 * nn)) / denom;
  const double half = z / denom * std::sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
  // At k = 0 (k = n) the lower (upper) end is exactly 0 (1); rounding would
  // otherwise leave it a few ulps inside and the interval would miss p.
  double low = successes == 0 ? 0.0 : std::max(0.0, centre - half);
  double high = successes == n ? 1.0 : std::min(1.0, centre + half);
  return {low, high};
}

nlohmann::json metrics_to_json(const ClassificationMetrics& m, const std::vector<std::string>& class_names) {
  nlohmann::json per_class = nlohmann::json::array();
  for (int64_t c = 0; c < m.num_classes; ++c) {
    const ClassStats& s = m.per_class[c];
    std::string label = c < static_cast<int64_t>(class_names.size()) ? class_names[c] : std::to_string(c);
    per_class.push_back({{"label", label},
                         {"precision", s.precision},
                         {"recall", s.recall},
                         {"f1", s.f1},
                         {"support", s.support},
                         {"accuracy", s.accuracy}});
  }
  return {{"n", m.n},
          {"accuracy", m.accuracy},
          {"accuracy_ci95", {m.accuracy_ci95.low, m.accuracy_ci95.high}},
          {"macro_precision", m.macro_precision},
          {"macro_recall", m.macro_recall},
          {"macro_f1", m.macro_f1},
          {"per_class", per_class},
          {"confusion_matrix", m.confusion}};
}

}  // namespace gpt2q
