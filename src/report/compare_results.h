#pragma once
// What `gpt2q compare` measures (per variant, raw), what it derives against
// the baseline (the first variant), and how both are serialised: results.json
// (docs/compare.md documents the schema), the per-variant cache
// OUT/variants/<file>.json, results.csv and confusion_<variant>.csv.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/classify.h"
#include "eval/divergence.h"
#include "eval/metrics.h"
#include "eval/perplexity.h"
#include "report/paired_stats.h"

namespace gpt2q::report {

enum class Task { Classification, LanguageModeling };

struct RunInfo {
  std::string gpt2q_version, git_commit, date_utc, command, host, cpu, cpu_features, blas, device = "CPU";
  int threads = 1;
  std::string model, data, format, text;  // data/format empty for an LM run, text empty without --text
  Task task = Task::Classification;
  int64_t samples = 0;     // classified texts (after --limit)
  int64_t limit = 0;       // 0: all
  int64_t max_length = 0;  // tokens per text (classification) or per window (LM)
  int64_t batch_size = 0;
  int64_t stride = 0;  // LM windows
  std::vector<std::string> class_names;
  std::vector<int32_t> labels;  // true labels of the classified samples
};

// Measured by running one variant; cached as OUT/variants/<file>.json.
struct VariantMeasurement {
  std::string name, description, source;  // source: "checkpoint", "quantized in memory", "ready-made: DIR"
  size_t weight_bytes = 0;
  std::vector<std::pair<std::string, size_t>> components;
  double prepare_seconds = 0;  // load / quantize
  LatencyStats latency;        // per sample (classification) or per window (LM)
  std::vector<int32_t> predictions;  // classification
  std::vector<float> logits;         // [samples, num_labels]
  int64_t num_labels = 0;
  std::optional<PerplexityResult> perplexity;      // LM, or --text
  std::optional<DivergenceSummary> lm_divergence;  // LM: next-token KL vs the baseline
  std::optional<PairedDifference> lm_nll_difference;  // LM: per-token NLL, variant − baseline
  bool reused = false;  // read from the cache of an earlier run
};

// Derived against the baseline.
struct VariantComparison {
  double compression_ratio = 1, memory_reduction = 0, speedup = 1;
  std::optional<ClassificationMetrics> metrics;
  std::optional<DivergenceSummary> divergence;  // class (or next-token) distributions vs the baseline's
  double agreement = 1;                         // top-1 agreement with the baseline
  std::optional<McNemar> mcnemar;
  double delta_accuracy = 0;  // candidate - baseline
  // The same Δ as a paired difference of per-sample correctness (1 right, 0
  // wrong; paired_difference: mean = Δ accuracy, se from the n−1 deviation of
  // the differences), so that mean ± 1.96·se is the paired normal (Wald)
  // 95% interval of Δ. Classification variants after the baseline, n >= 2.
  std::optional<PairedDifference> accuracy_difference;
  // 95% paired percentile-bootstrap interval of Δ macro-F1
  // (paired_bootstrap_macro_f1_delta); same variants as accuracy_difference.
  std::optional<Interval> macro_f1_delta_ci95;
  bool ci_overlaps_baseline = true;
};

struct Finding {
  std::string kind;  // "best-accuracy", "lowest-memory", "fastest", "trade-off", "delta", "noise", ...
  std::string text;
};

struct CompareResults {
  RunInfo run;
  std::vector<VariantMeasurement> variants;  // [0] is the baseline
  std::vector<VariantComparison> comparisons;
  std::vector<Finding> findings, recommendations;
  const std::string& baseline() const { return variants.front().name; }
};

// Fills `comparisons` from the measurements (classification metrics, KL,
// agreement, McNemar, ratios). Error when there is no variant.
void compute_comparisons(CompareResults& r);

nlohmann::json measurement_to_json(const VariantMeasurement& m);
VariantMeasurement measurement_from_json(const nlohmann::json& j);  // Error on a malformed cache

nlohmann::json results_to_json(const CompareResults& r);
std::string results_csv(const CompareResults& r);
// Rows = true class, columns = predicted, with class names as header / first column.
std::string confusion_csv(const ClassificationMetrics& m, const std::vector<std::string>& class_names);
// RFC 4180 field quoting (only when needed).
std::string csv_field(const std::string& s);

std::string_view task_name(Task t);  // "classification", "language-modeling"

}  // namespace gpt2q::report
