#include "report/compare_results.h"

#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"

namespace gpt2q::report {

using nlohmann::json;

std::string_view task_name(Task t) { return t == Task::Classification ? "classification" : "language-modeling"; }

void compute_comparisons(CompareResults& r) {
  if (r.variants.empty()) fail("compare: no variants");
  const VariantMeasurement& base = r.variants.front();
  const bool classify = r.run.task == Task::Classification;
  std::optional<ClassificationMetrics> base_metrics;
  r.comparisons.assign(r.variants.size(), {});
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const VariantMeasurement& v = r.variants[i];
    VariantComparison& c = r.comparisons[i];
    c.compression_ratio = ratio_or_zero(static_cast<double>(base.weight_bytes), static_cast<double>(v.weight_bytes));
    c.memory_reduction = memory_reduction(base.weight_bytes, v.weight_bytes);
    c.speedup = ratio_or_zero(base.latency.mean_ms, v.latency.mean_ms);
    if (classify) {
      c.metrics = compute_classification_metrics(r.run.labels, v.predictions, v.num_labels);
      if (i == 0) base_metrics = c.metrics;
      c.divergence = summarize_divergences(row_divergences(base.logits, v.logits, v.num_labels));
      c.agreement = prediction_agreement(base.predictions, v.predictions);
      c.mcnemar = mcnemar_exact(r.run.labels, base.predictions, v.predictions);
      c.delta_accuracy = c.metrics->accuracy - base_metrics->accuracy;
      c.ci_overlaps_baseline = intervals_overlap(c.metrics->accuracy_ci95, base_metrics->accuracy_ci95);
      if (i > 0 && r.run.labels.size() >= 2) {
        std::vector<double> base_ok, cand_ok;
        for (size_t k = 0; k < r.run.labels.size(); ++k) {
          base_ok.push_back(base.predictions.at(k) == r.run.labels[k] ? 1.0 : 0.0);
          cand_ok.push_back(v.predictions.at(k) == r.run.labels[k] ? 1.0 : 0.0);
        }
        c.accuracy_difference = paired_difference(base_ok, cand_ok);
        c.macro_f1_delta_ci95 =
            paired_bootstrap_macro_f1_delta(r.run.labels, base.predictions, v.predictions, v.num_labels);
      }
    } else if (v.lm_divergence) {
      c.divergence = v.lm_divergence;
      c.agreement = v.lm_divergence->top1_agreement;
    }
  }
}

namespace {

json latency_json(const LatencyStats& l) {
  return {{"samples", l.samples}, {"batches", l.batches}, {"total_s", l.total_s}, {"mean_ms", l.mean_ms},
          {"p50_ms", l.p50_ms},   {"p90_ms", l.p90_ms},   {"p99_ms", l.p99_ms},   {"samples_per_s", l.samples_per_s}};
}

LatencyStats latency_from_json(const json& j) {
  LatencyStats l;
  l.samples = j.at("samples");
  l.batches = j.at("batches");
  l.total_s = j.at("total_s");
  l.mean_ms = j.at("mean_ms");
  l.p50_ms = j.at("p50_ms");
  l.p90_ms = j.at("p90_ms");
  l.p99_ms = j.at("p99_ms");
  l.samples_per_s = j.at("samples_per_s");
  return l;
}

json ppl_json(const PerplexityResult& p) {
  return {{"tokens", p.tokens}, {"nll", p.nll},           {"ppl", p.ppl},        {"windows", p.windows},
          {"max_length", p.max_length}, {"stride", p.stride}, {"seconds", p.seconds}};
}

PerplexityResult ppl_from_json(const json& j) {
  PerplexityResult p;
  p.tokens = j.at("tokens");
  p.nll = j.at("nll");
  p.ppl = j.at("ppl");
  p.windows = j.at("windows");
  p.max_length = j.at("max_length");
  p.stride = j.at("stride");
  p.seconds = j.at("seconds");
  return p;
}

json divergence_json(const DivergenceSummary& d) {
  return {{"count", d.count},   {"mean", d.kl_mean}, {"median", d.kl_median},           {"p90", d.kl_p90},
          {"p99", d.kl_p99},    {"max", d.kl_max},   {"top1_agreement", d.top1_agreement}};
}

DivergenceSummary divergence_from_json(const json& j) {
  DivergenceSummary d;
  d.count = j.at("count");
  d.kl_mean = j.at("mean");
  d.kl_median = j.at("median");
  d.kl_p90 = j.at("p90");
  d.kl_p99 = j.at("p99");
  d.kl_max = j.at("max");
  d.top1_agreement = j.at("top1_agreement");
  return d;
}

json paired_json(const PairedDifference& d) {
  return {{"n", d.n}, {"mean", d.mean}, {"se", d.se}, {"p_value", d.p_value}};
}

PairedDifference paired_from_json(const json& j) {
  PairedDifference d;
  d.n = j.at("n");
  d.mean = j.at("mean");
  d.se = j.at("se");
  d.p_value = j.at("p_value");
  return d;
}

json components_json(const std::vector<std::pair<std::string, size_t>>& c) {
  json j = json::object();
  for (const auto& [name, bytes] : c) j[name] = bytes;
  return j;
}

json optional_json(const auto& v, auto&& f) { return v ? f(*v) : json(nullptr); }

}  // namespace

json measurement_to_json(const VariantMeasurement& m) {
  return {{"name", m.name},
          {"description", m.description},
          {"source", m.source},
          {"weight_bytes", m.weight_bytes},
          {"components", m.components},  // [[name, bytes], ...] in the model's order
          {"prepare_seconds", m.prepare_seconds},
          {"latency", latency_json(m.latency)},
          {"num_labels", m.num_labels},
          {"predictions", m.predictions},
          {"logits", m.logits},
          {"perplexity", optional_json(m.perplexity, ppl_json)},
          {"lm_divergence", optional_json(m.lm_divergence, divergence_json)},
          {"lm_nll_difference", optional_json(m.lm_nll_difference, paired_json)}};
}

VariantMeasurement measurement_from_json(const json& j) {
  try {
    VariantMeasurement m;
    m.name = j.at("name");
    m.description = j.at("description");
    m.source = j.at("source");
    m.weight_bytes = j.at("weight_bytes");
    m.components = j.at("components").get<std::vector<std::pair<std::string, size_t>>>();
    m.prepare_seconds = j.at("prepare_seconds");
    m.latency = latency_from_json(j.at("latency"));
    m.num_labels = j.at("num_labels");
    m.predictions = j.at("predictions").get<std::vector<int32_t>>();
    m.logits = j.at("logits").get<std::vector<float>>();
    if (!j.at("perplexity").is_null()) m.perplexity = ppl_from_json(j.at("perplexity"));
    if (!j.at("lm_divergence").is_null()) m.lm_divergence = divergence_from_json(j.at("lm_divergence"));
    if (!j.at("lm_nll_difference").is_null()) m.lm_nll_difference = paired_from_json(j.at("lm_nll_difference"));
    if (m.logits.size() != m.predictions.size() * static_cast<size_t>(m.num_labels))
      fail("{} logits for {} predictions of {} labels", m.logits.size(), m.predictions.size(), m.num_labels);
    return m;
  } catch (const json::exception& e) {
    fail("malformed variant cache: {}", e.what());
  }
}

json results_to_json(const CompareResults& r) {
  const RunInfo& ri = r.run;
  json run = {{"gpt2q_version", ri.gpt2q_version},
              {"git_commit", ri.git_commit},
              {"date_utc", ri.date_utc},
              {"command", ri.command},
              {"host", ri.host},
              {"cpu", ri.cpu},
              {"cpu_features", ri.cpu_features},
              {"blas", ri.blas},
              {"device", ri.device},
              {"threads", ri.threads},
              {"task", task_name(ri.task)},
              {"model", ri.model},
              {"data", ri.data.empty() ? json(nullptr) : json(ri.data)},
              {"format", ri.format.empty() ? json(nullptr) : json(ri.format)},
              {"text", ri.text.empty() ? json(nullptr) : json(ri.text)},
              {"samples", ri.samples},
              {"limit", ri.limit == 0 ? json(nullptr) : json(ri.limit)},
              {"max_length", ri.max_length},
              {"batch_size", ri.batch_size},
              {"stride", ri.stride == 0 ? json(nullptr) : json(ri.stride)},
              {"class_names", ri.class_names},
              {"baseline", r.baseline()}};
  json variants = json::array();
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const VariantMeasurement& m = r.variants[i];
    const VariantComparison& c = r.comparisons.at(i);
    json lat = latency_json(m.latency);
    lat["unit"] = ri.task == Task::Classification ? "sample" : "window";
    lat["speedup"] = c.speedup;
    json v = {{"name", m.name},
              {"description", m.description},
              {"source", m.source},
              {"reused", m.reused},
              {"prepare_seconds", m.prepare_seconds},
              {"memory",
               {{"weight_bytes", m.weight_bytes},
                {"weight_mb", to_mb(m.weight_bytes)},
                {"weight_mib", to_mib(m.weight_bytes)},
                {"components", components_json(m.components)},
                {"compression_ratio", c.compression_ratio},
                {"memory_reduction", c.memory_reduction}}},
              {"latency", lat},
              {"quality", c.metrics ? metrics_to_json(*c.metrics, ri.class_names) : json(nullptr)},
              {"perplexity", optional_json(m.perplexity, ppl_json)}};
    json vs = {{"agreement", c.agreement}, {"kl", optional_json(c.divergence, divergence_json)}};
    if (c.metrics) {
      vs["delta_accuracy"] = c.delta_accuracy;
      vs["accuracy_ci_overlaps_baseline"] = c.ci_overlaps_baseline;
      if (c.accuracy_difference)
        vs["delta_accuracy_ci95"] = {c.accuracy_difference->mean - kZ95 * c.accuracy_difference->se,
                                     c.accuracy_difference->mean + kZ95 * c.accuracy_difference->se};
      if (c.macro_f1_delta_ci95) {
        vs["delta_macro_f1"] = c.metrics->macro_f1 - r.comparisons.front().metrics->macro_f1;
        vs["delta_macro_f1_ci95"] = {c.macro_f1_delta_ci95->low, c.macro_f1_delta_ci95->high};
      }
      vs["mcnemar"] = {{"b", c.mcnemar->b}, {"c", c.mcnemar->c}, {"p_value", c.mcnemar->p_value}};
    }
    if (m.perplexity && r.variants.front().perplexity)
      vs["delta_perplexity"] = m.perplexity->ppl - r.variants.front().perplexity->ppl;
    if (m.lm_nll_difference) vs["nll_difference"] = paired_json(*m.lm_nll_difference);
    v["vs_baseline"] = vs;
    variants.push_back(v);
  }
  auto findings_json = [](const std::vector<Finding>& f) {
    json a = json::array();
    for (const auto& x : f) a.push_back({{"kind", x.kind}, {"text", x.text}});
    return a;
  };
  return {{"schema", "gpt2q.compare/1"},
          {"run", run},
          {"variants", variants},
          {"findings", findings_json(r.findings)},
          {"recommendations", findings_json(r.recommendations)}};
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

namespace {
// Shortest round-tripping text of a double (so the CSV equals results.json).
std::string num(double v) { return std::isfinite(v) ? fmt::format("{}", v) : ""; }
}  // namespace

std::string results_csv(const CompareResults& r) {
  std::ostringstream out;
  out << "variant,description,source,weight_bytes,weight_mb,weight_mib,compression_ratio,memory_reduction,"
         "latency_unit,latency_mean_ms,latency_p50_ms,latency_p90_ms,latency_p99_ms,samples_per_s,speedup,"
         "accuracy,accuracy_ci95_low,accuracy_ci95_high,macro_precision,macro_recall,macro_f1,agreement,"
         "kl_mean,kl_median,kl_p90,kl_p99,kl_max,mcnemar_p,perplexity,nll_difference,nll_difference_p\n";
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const auto& m = r.variants[i];
    const auto& c = r.comparisons.at(i);
    const auto& l = m.latency;
    out << csv_field(m.name) << ',' << csv_field(m.description) << ',' << csv_field(m.source) << ','
        << m.weight_bytes << ',' << num(to_mb(m.weight_bytes)) << ',' << num(to_mib(m.weight_bytes)) << ','
        << num(c.compression_ratio) << ',' << num(c.memory_reduction) << ','
        << (r.run.task == Task::Classification ? "sample" : "window") << ',' << num(l.mean_ms) << ','
        << num(l.p50_ms) << ',' << num(l.p90_ms) << ',' << num(l.p99_ms) << ',' << num(l.samples_per_s) << ','
        << num(c.speedup);
    if (c.metrics) {
      const auto& q = *c.metrics;
      out << ',' << num(q.accuracy) << ',' << num(q.accuracy_ci95.low) << ',' << num(q.accuracy_ci95.high) << ','
          << num(q.macro_precision) << ',' << num(q.macro_recall) << ',' << num(q.macro_f1);
    } else {
      out << ",,,,,,";
    }
    out << ',' << num(c.agreement);
    if (c.divergence)
      out << ',' << num(c.divergence->kl_mean) << ',' << num(c.divergence->kl_median) << ','
          << num(c.divergence->kl_p90) << ',' << num(c.divergence->kl_p99) << ',' << num(c.divergence->kl_max);
    else
      out << ",,,,,";
    out << ',' << (c.mcnemar ? num(c.mcnemar->p_value) : "") << ','
        << (m.perplexity ? num(m.perplexity->ppl) : "") << ','
        << (m.lm_nll_difference ? num(m.lm_nll_difference->mean) : "") << ','
        << (m.lm_nll_difference ? num(m.lm_nll_difference->p_value) : "") << '\n';
  }
  return out.str();
}

std::string confusion_csv(const ClassificationMetrics& m, const std::vector<std::string>& names) {
  std::ostringstream out;
  out << "true\\predicted";
  for (int64_t c = 0; c < m.num_classes; ++c) out << ',' << csv_field(names.at(c));
  out << '\n';
  for (int64_t t = 0; t < m.num_classes; ++t) {
    out << csv_field(names.at(t));
    for (int64_t v : m.confusion[t]) out << ',' << v;
    out << '\n';
  }
  return out.str();
}

}  // namespace gpt2q::report
