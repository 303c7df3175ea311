#include "report/report_tables.h"

#include <fmt/format.h>

#include "report/number_format.h"

namespace gpt2q::report {

namespace {
bool classify(const CompareResults& r) { return r.run.task == Task::Classification; }
}  // namespace

Table efficiency_table(const CompareResults& r) {
  const std::string unit = classify(r) ? "sample" : "window";
  Table t{"efficiency",
          {"variant", "weights MB", "weights MiB", "compression", "memory saved", fmt::format("ms/{} mean", unit),
           "p50", "p90", "p99", fmt::format("{}s/s", unit), "speedup"},
          {},
          {}};
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const auto& v = r.variants[i];
    const auto& c = r.comparisons[i];
    const auto& l = v.latency;
    t.rows.push_back({v.name, fmt::format("{:.3f}", to_mb(v.weight_bytes)), fmt::format("{:.3f}", to_mib(v.weight_bytes)),
                      fmt_ratio(c.compression_ratio), fmt_pct(c.memory_reduction, 1), fmt_ms(l.mean_ms),
                      fmt_ms(l.p50_ms), fmt_ms(l.p90_ms), fmt_ms(l.p99_ms), fmt_rate(l.samples_per_s),
                      fmt_ratio(c.speedup)});
    t.row_keys.push_back(v.name);
  }
  return t;
}

Table quality_table(const CompareResults& r) {
  Table t;
  t.id = "quality";
  if (classify(r)) {
    t.header = {"variant", "accuracy", "95% CI (Wilson)", "Δ accuracy", "McNemar p", "macro P", "macro R",
                "macro F1", "agreement", "KL mean", "KL p50", "KL p90", "KL p99"};
  } else {
    t.header = {"variant", "perplexity", "Δ perplexity", "Δ NLL/token", "p", "tokens", "top-1 agreement", "KL mean",
                "KL p50", "KL p90", "KL p99"};
  }
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const auto& v = r.variants[i];
    const auto& c = r.comparisons[i];
    std::vector<std::string> row{v.name};
    if (classify(r)) {
      const auto& m = *c.metrics;
      row.insert(row.end(), {fmt_pct(m.accuracy), fmt::format("{} – {}", fmt_pct(m.accuracy_ci95.low),
                                                             fmt_pct(m.accuracy_ci95.high)),
                             i == 0 ? "–" : fmt_pp(c.delta_accuracy), i == 0 ? "–" : fmt_p(c.mcnemar->p_value),
                             fmt_f(m.macro_precision), fmt_f(m.macro_recall), fmt_f(m.macro_f1)});
    } else {
      const bool has = v.perplexity.has_value() && r.variants[0].perplexity.has_value();
      row.insert(row.end(), {v.perplexity ? fmt::format("{:.4f}", v.perplexity->ppl) : "–",
                             has && i > 0 ? fmt::format("{:+.4f}", v.perplexity->ppl - r.variants[0].perplexity->ppl) : "–",
                             v.lm_nll_difference && i > 0 ? fmt::format("{:+.3g} ± {:.2g}", v.lm_nll_difference->mean,
                                                                        v.lm_nll_difference->se)
                                                          : "–",
                             v.lm_nll_difference && i > 0 ? fmt_p(v.lm_nll_difference->p_value) : "–",
                             v.perplexity ? fmt::format("{}", v.perplexity->tokens) : "–"});
    }
    row.push_back(fmt_pct(c.agreement));
    if (c.divergence) {
      for (double x : {c.divergence->kl_mean, c.divergence->kl_median, c.divergence->kl_p90, c.divergence->kl_p99})
        row.push_back(fmt_kl(x));
    } else {
      row.insert(row.end(), 4, "–");
    }
    t.rows.push_back(row);
    t.row_keys.push_back(v.name);
  }
  return t;
}

Table per_class_f1_table(const CompareResults& r) {
  Table t;
  t.id = "per-class-f1";
  t.key_attr = "data-class";
  t.header = {"class", "support"};
  for (const auto& v : r.variants) t.header.push_back(v.name);
  if (!classify(r)) return t;
  const auto& names = r.run.class_names;
  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<std::string> row{names[k], fmt::format("{}", r.comparisons[0].metrics->per_class[k].support)};
    for (const auto& c : r.comparisons) row.push_back(fmt_f(c.metrics->per_class[k].f1));
    t.rows.push_back(row);
    t.row_keys.push_back(names[k]);
  }
  return t;
}

Table per_class_detail_table(const CompareResults& r, size_t variant) {
  Table t;
  t.id = "per-class";
  t.key_attr = "data-class";
  t.header = {"class", "precision", "recall", "F1", "accuracy", "support", "predicted"};
  const auto& m = *r.comparisons.at(variant).metrics;
  for (size_t k = 0; k < r.run.class_names.size(); ++k) {
    const auto& s = m.per_class[k];
    t.rows.push_back({r.run.class_names[k], fmt_f(s.precision), fmt_f(s.recall), fmt_f(s.f1), fmt_f(s.accuracy),
                      fmt::format("{}", s.support), fmt::format("{}", s.predicted)});
    t.row_keys.push_back(r.run.class_names[k]);
  }
  return t;
}

Table setup_table(const CompareResults& r) {
  const RunInfo& ri = r.run;
  Table t;
  t.id = "setup";
  t.key_attr = "data-key";
  t.header = {"item", "value"};
  auto add = [&](const std::string& k, const std::string& v) {
    t.rows.push_back({k, v});
    t.row_keys.push_back(k);
  };
  add("gpt2q", fmt::format("{} (commit {})", ri.gpt2q_version, ri.git_commit));
  add("date", ri.date_utc);
  add("machine", ri.host);
  add("device", ri.device);
  add("CPU", ri.cpu);
  add("CPU features", ri.cpu_features);
  if (!ri.blas.empty()) add("BLAS", ri.blas);
  add("threads", fmt::format("{}", ri.threads));
  add("model", fmt::format("{} ({})", ri.model, task_name(ri.task)));
  if (!ri.data.empty())
    add("data", fmt::format("{} ({}, {} samples{})", ri.data, ri.format, ri.samples,
                            ri.limit > 0 ? fmt::format(", --limit {}", ri.limit) : ""));
  if (!ri.text.empty()) add("text", fmt::format("{} ({} tokens, stride {})", ri.text, ri.samples, ri.stride));
  add("max length", fmt::format("{} tokens", ri.max_length));
  if (ri.task == Task::Classification) add("batch size", fmt::format("{}", ri.batch_size));
  add("baseline", r.baseline());
  for (const auto& v : r.variants)
    add("variant " + v.name, fmt::format("{}; {}{}", v.description, v.source, v.reused ? " (reused from cache)" : ""));
  return t;
}

std::vector<std::string> executive_summary(const CompareResults& r) {
  std::vector<std::string> out;
  const RunInfo& ri = r.run;
  out.push_back(fmt::format("{} variants of {} were run on the same {} {} of {}; {} is the baseline.",
                            r.variants.size(), ri.model, ri.samples, classify(r) ? "samples" : "tokens",
                            classify(r) ? ri.data : ri.text, r.baseline()));
  for (const char* kind : {"best-accuracy", "best-perplexity", "lowest-memory", "fastest", "noise", "chance-level"})
    for (const auto& f : r.findings)
      if (f.kind == kind) out.push_back(f.text);
  if (!r.recommendations.empty()) out.push_back("Recommendation: " + r.recommendations.front().text);
  return out;
}

}  // namespace gpt2q::report
