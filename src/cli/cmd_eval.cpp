// gpt2q eval: accuracy, macro and per-class precision/recall/F1, confusion
// matrix and latency of a GPT2ForSequenceClassification checkpoint on
// labelled text (AG News CSV, text/label CSV, or JSONL).
#include <algorithm>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/model_args.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/file_util.h"
#include "eval/classify.h"
#include "io/dataset.h"
#include "model/gpt2.h"

namespace {

struct EvalArgs {
  std::string model, data;
  std::optional<std::string> format, predictions, tokenizer;
  gpt2q::cli::DeviceArgs device;
  std::optional<int64_t> max_length;  // default: min(128, n_positions)
  int64_t batch_size = 8;
  bool json = false;
};

// CSV `index,label,pred`: one row per input row in file order, 0-based index
// and 0-based class indices.
void write_predictions(const std::string& path, const gpt2q::Dataset& data, const std::vector<int32_t>& pred) {
  std::ostringstream out;
  out << "index,label,pred\n";
  for (size_t i = 0; i < data.rows.size(); ++i) out << i << ',' << data.rows[i].label << ',' << pred[i] << '\n';
  gpt2q::write_file_atomic(path, out.str());
}

nlohmann::json result_json(const EvalArgs& a, const gpt2q::Placement& placement, const gpt2q::ClassifyOptions& opts, gpt2q::DataFormat format, const gpt2q::EvalResult& r,
                           const std::vector<std::string>& names) {
  nlohmann::json j = gpt2q::metrics_to_json(r.metrics, names);
  const auto& lat = r.run.latency;
  j["latency_ms_per_sample"] = lat.mean_ms;
  j["latency_ms_p50"] = lat.p50_ms;
  j["latency_ms_p90"] = lat.p90_ms;
  j["latency_ms_p99"] = lat.p99_ms;
  j["samples_per_s"] = lat.samples_per_s;
  j["seconds"] = lat.total_s;
  j["model"] = a.model;
  j["data"] = a.data;
  j["format"] = format == gpt2q::DataFormat::AgNews ? "agnews" : format == gpt2q::DataFormat::Csv ? "csv" : "jsonl";
  j["max_length"] = opts.max_length;
  j["batch_size"] = opts.batch_size;
  j["threads"] = gpt2q::num_threads();
  j["device"] = gpt2q::cli::device_json(placement);
  return j;
}

void print_human(const EvalArgs& a, const gpt2q::Placement& placement, const gpt2q::ClassifyOptions& opts, const gpt2q::EvalResult& r, const std::vector<std::string>& names) {
  const auto& m = r.metrics;
  const auto& lat = r.run.latency;
  fmt::print("model:     {}\n", a.model);
  fmt::print("data:      {} ({} samples)\n", a.data, m.n);
  fmt::print("accuracy:  {:.4f} ({} / {}; 95% CI {:.4f} - {:.4f}, Wilson)\n", m.accuracy, m.correct, m.n,
             m.accuracy_ci95.low, m.accuracy_ci95.high);
  fmt::print("macro:     precision {:.4f}  recall {:.4f}  F1 {:.4f}\n", m.macro_precision, m.macro_recall, m.macro_f1);
  size_t w = 5;
  for (const auto& n : names) w = std::max(w, n.size());
  fmt::print("\n{:<{}}  {:>9}  {:>9}  {:>9}  {:>8}\n", "class", w, "precision", "recall", "f1", "support");
  for (int64_t c = 0; c < m.num_classes; ++c) {
    const auto& s = m.per_class[c];
    fmt::print("{:<{}}  {:>9.4f}  {:>9.4f}  {:>9.4f}  {:>8}\n", names[c], w, s.precision, s.recall, s.f1, s.support);
  }
  fmt::print("\nconfusion matrix (rows = true class, columns = predicted):\n");
  size_t cw = 6;
  for (const auto& row : m.confusion)
    for (int64_t v : row) cw = std::max(cw, std::to_string(v).size());
  fmt::print("{:<{}}", "", w);
  for (int64_t c = 0; c < m.num_classes; ++c) fmt::print("  {:>{}}", c, cw);
  fmt::print("\n");
  for (int64_t t = 0; t < m.num_classes; ++t) {
    fmt::print("{:<{}}", names[t], w);
    for (int64_t v : m.confusion[t]) fmt::print("  {:>{}}", v, cw);
    fmt::print("\n");
  }
  fmt::print("\nlatency:   {:.3f} ms/sample (per batch: p50 {:.3f}, p90 {:.3f}, p99 {:.3f}); {:.1f} samples/s\n",
             lat.mean_ms, lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.samples_per_s);
  fmt::print("           batch size {}, max length {}, {} threads\n", opts.batch_size, opts.max_length,
             gpt2q::num_threads());
  fmt::print("device:    {}\n", gpt2q::cli::device_line(placement));
}

void run(const EvalArgs& a) {
  if (a.batch_size < 1) gpt2q::fail("--batch-size {}: must be at least 1", a.batch_size);
  if (a.max_length && *a.max_length < 1) gpt2q::fail("--max-length {}: must be at least 1", *a.max_length);
  const auto format = a.format ? gpt2q::parse_data_format(*a.format) : gpt2q::guess_data_format(a.data);

  auto model = gpt2q::cli::load_model(a.model, a.device);
  gpt2q::require_classifier(*model, a.model);
  const int64_t n_positions = model->config().n_positions;
  if (a.max_length && *a.max_length > n_positions)
    gpt2q::fail("--max-length {}: must be in [1, {}] (the model's n_positions)", *a.max_length, n_positions);
  const int64_t max_length = a.max_length.value_or(std::min<int64_t>(128, n_positions));
  auto tokenizer = gpt2q::cli::load_model_tokenizer(a.model, a.tokenizer, model->config());
  const auto data = gpt2q::load_dataset(a.data, format);

  gpt2q::ClassifyOptions opts;
  opts.max_length = max_length;
  opts.batch_size = a.batch_size;
  const auto result = gpt2q::evaluate_classifier(*model, tokenizer, data, opts);
  const auto names = gpt2q::class_names(model->config(), model->num_labels());

  if (a.predictions) write_predictions(*a.predictions, data, result.run.predictions);
  if (a.json)
    gpt2q::cli::print_json(result_json(a, model->placement(), opts, format, result, names));
  else
    print_human(a, model->placement(), opts, result, names);
}

}  // namespace

GPT2Q_COMMAND(eval) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Accuracy, macro/per-class P/R/F1, confusion matrix and latency of a classifier");
  cmd->add_option("--model", args->model, "GPT2ForSequenceClassification checkpoint dir")->required();
  gpt2q::cli::add_device_options(cmd, args->device);
  cmd->add_option("--data", args->data, "labelled text: AG News CSV, CSV with text,label columns, or JSONL")
      ->required();
  cmd->add_option("--format", args->format, "agnews | csv | jsonl (default: guessed from the file)");
  cmd->add_option("--max-length", args->max_length,
                  "tokens kept per text, the first ones (default 128, or n_positions if smaller)");
  cmd->add_option("--batch-size", args->batch_size, "texts per forward pass (default 8)");
  cmd->add_option("--predictions", args->predictions, "write index,label,pred CSV here");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer dir, used when the model dir has none");
  cmd->add_flag("--json", args->json, "print one JSON object");
  cmd->callback([args] { run(*args); });
}
