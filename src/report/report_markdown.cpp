#include "report/report_markdown.h"

#include <fmt/format.h>

#include "report/number_format.h"
#include "report/report_tables.h"

namespace gpt2q::report {

namespace {

std::string cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

std::string markdown_table(const Table& t) {
  std::string o = "|";
  for (const auto& h : t.header) o += " " + cell(h) + " |";
  o += "\n|";
  for (size_t i = 0; i < t.header.size(); ++i) o += i == 0 ? "---|" : "---:|";
  o += "\n";
  for (const auto& row : t.rows) {
    o += "|";
    for (const auto& c : row) o += " " + cell(c) + " |";
    o += "\n";
  }
  return o + "\n";
}

std::string bullets(const std::vector<Finding>& f) {
  std::string o;
  for (const auto& x : f) o += "- " + x.text + "\n";
  return o + "\n";
}

}  // namespace

std::string report_markdown(const CompareResults& r) {
  const RunInfo& ri = r.run;
  const bool classify = ri.task == Task::Classification;
  std::string o = fmt::format("# Quantization comparison: {}\n\n", ri.model);
  o += fmt::format("{} · {} · gpt2q {} ({}) · {} threads on {}\n\n", classify ? ri.data : ri.text, ri.date_utc,
                   ri.gpt2q_version, ri.git_commit, ri.threads, ri.cpu);
  o += "## Executive summary\n\n";
  for (const auto& s : executive_summary(r)) o += "- " + s + "\n";
  o += "\n## Efficiency\n\n";
  o += fmt::format("Weights held in memory (`GPT2Model::total_weight_bytes`; MB = 10^6 B, MiB = 2^20 B); "
                   "compression and speedup are relative to {}. Latency is per {} over {} timed {} after one "
                   "warm-up {}.\n\n",
                   r.baseline(), classify ? "sample" : "window",
                   r.variants.front().latency.batches, classify ? "batches" : "windows",
                   classify ? "batch" : "pass");
  o += markdown_table(efficiency_table(r));
  o += "## Quality\n\n";
  if (classify)
    o += fmt::format("Accuracy on {} samples with its 95% Wilson interval; Δ and McNemar's exact p against {} "
                     "(paired predictions); agreement = same predicted class as {}; KL = KL(baseline ‖ variant) of the "
                     "class distributions, in nats.\n\n",
                     ri.samples, r.baseline(), r.baseline());
  else
    o += fmt::format("Sliding-window perplexity on {} tokens; agreement and KL are per predicted token against {}.\n\n",
                     ri.samples, r.baseline());
  o += markdown_table(quality_table(r));
  if (classify) {
    o += "## Per-class F1\n\n";
    o += markdown_table(per_class_f1_table(r));
  }
  o += "## Key findings\n\n" + bullets(r.findings);
  o += "## Recommendations\n\n" + bullets(r.recommendations);
  if (classify) {
    o += "## Per-variant details\n\n";
    for (size_t i = 0; i < r.variants.size(); ++i) {
      const auto& m = *r.comparisons[i].metrics;
      o += fmt::format("### {}\n\n{}. Accuracy {} ({} / {}).\n\n", r.variants[i].name, r.variants[i].description,
                       fmt_pct(m.accuracy), m.correct, m.n);
      o += markdown_table(per_class_detail_table(r, i));
      o += "Confusion matrix (rows = true class, columns = predicted):\n\n";
      Table cm;
      cm.header = {"true \\ predicted"};
      for (const auto& n : ri.class_names) cm.header.push_back(n);
      for (size_t t = 0; t < ri.class_names.size(); ++t) {
        std::vector<std::string> row{ri.class_names[t]};
        for (int64_t v : m.confusion[t]) row.push_back(fmt::format("{}", v));
        cm.rows.push_back(row);
      }
      o += markdown_table(cm);
    }
  }
  o += "## Setup\n\n";
  o += markdown_table(setup_table(r));
  o += "Command:\n\n```sh\n" + ri.command + "\n```\n\n";
  o += "Files: results.json (every number here; schema in docs/compare.md), results.csv (one row per variant)";
  if (classify) o += ", confusion_<variant>.csv";
  o += ", report.html (charts).\n";
  return o;
}

}  // namespace gpt2q::report
