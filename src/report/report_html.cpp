#include "report/report_html.h"

#include <fmt/format.h>

#include "report/number_format.h"
#include "report/report_tables.h"
#include "report/svg_chart.h"

namespace gpt2q::report {

namespace {

const char* kStyle = R"CSS(
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#d9dce1; --accent:#0072B2; --bg:#fff; --alt:#f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1rem; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 16px; }
ul { padding-left: 1.2em; } li { margin: 4px 0; }
.summary { background: var(--alt); border-left: 4px solid var(--accent); padding: 10px 16px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 0.85rem; margin: 6px 0 12px; }
th, td { padding: 5px 6px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
thead th { background: var(--alt); font-weight: 600; }
tr[data-baseline="yes"] td:first-child::after { content: " (baseline)"; color: var(--muted); font-size: 0.85em; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.chart-note { color: var(--muted); font-size: 0.85rem; margin: 4px 0 0; }
svg.chart { width: 100%; height: auto; display: block; }
.heatmaps { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 14px; }
.heatmaps svg.chart { max-width: 420px; }
svg text { font: 15px -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--fg); }
svg .tick, svg .axis-label { fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .baseline-axis { stroke: #888; stroke-width: 1; }
svg .value { font-size: 13px; } svg .note { font-size: 14px; font-weight: 600; fill: var(--accent); }
svg .tick { font-size: 13px; }
svg .cell-text { font-size: 15px; } svg .cell-text.dark { fill: #fff; }
pre { background: var(--alt); padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
details summary { cursor: pointer; font-weight: 600; }
@media (max-width: 700px) { .charts { grid-template-columns: 1fr; } main { padding: 12px; } }
@media print {
  @page { size: A4; margin: 14mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, table, .summary, .heatmaps > * { break-inside: avoid; }
  .charts { grid-template-columns: 1fr; gap: 10px; }
  figure { max-width: 16cm; margin: 0 auto; }
  .heatmaps { grid-template-columns: 1fr 1fr 1fr; }
  .table-wrap { overflow: visible; }
  table { font-size: 7.5pt; }
  th, td { padding: 2px 4px; }
  td { white-space: nowrap; }
  details { display: block; } details > summary { display: none; }
  a { color: inherit; text-decoration: none; }
}
)CSS";

// Marks each chart once laid out (see report_html.h).
// Runs at the end of <body>: getBoundingClientRect forces layout at once.
const char* kScript = R"JS(
document.querySelectorAll('svg.chart').forEach(function (s) {
  var b = s.getBoundingClientRect(); s.setAttribute('data-rendered', b.width > 0 && b.height > 0 ? 'yes' : 'no'); });
)JS";

std::string esc(const std::string& s) { return html_escape(s); }

std::string html_table(const Table& t, const std::string& baseline = "") {
  std::string o = fmt::format("<div class=\"table-wrap\"><table data-table=\"{}\">\n<thead><tr>", esc(t.id));
  for (const auto& h : t.header) o += "<th>" + esc(h) + "</th>";
  o += "</tr></thead>\n<tbody>\n";
  for (size_t i = 0; i < t.rows.size(); ++i) {
    o += "<tr";
    if (i < t.row_keys.size()) {
      o += fmt::format(" {}=\"{}\"", t.key_attr, esc(t.row_keys[i]));
      if (!baseline.empty() && t.row_keys[i] == baseline) o += " data-baseline=\"yes\"";
    }
    o += ">";
    for (const auto& c : t.rows[i]) o += "<td>" + esc(c) + "</td>";
    o += "</tr>\n";
  }
  return o + "</tbody></table></div>\n";
}

// `note`, when given, says under the chart how to read it (what an interval is).
std::string figure(const std::string& caption, const std::string& svg, const std::string& note = "") {
  std::string o = "<figure><figcaption>" + esc(caption) + "</figcaption>\n" + svg;
  if (!note.empty()) o += "<p class=\"chart-note\">" + esc(note) + "</p>\n";
  return o + "</figure>\n";
}

std::string list(const std::vector<Finding>& f, const std::string& id) {
  std::string o = fmt::format("<ul data-list=\"{}\">\n", id);
  for (const auto& x : f) o += fmt::format("<li data-kind=\"{}\">{}</li>\n", esc(x.kind), esc(x.text));
  return o + "</ul>\n";
}

std::vector<std::string> variant_names(const CompareResults& r) {
  std::vector<std::string> n;
  for (const auto& v : r.variants) n.push_back(v.name);
  return n;
}

// Absolute scores of all variants sit within a point or two of each other
// (all bars ~0.86), so the quality that matters is shown as the change
// against the baseline, in percentage points, around a zero line.
std::string quality_delta_chart(const CompareResults& r) {
  const std::string& base = r.baseline();
  BarChart d{"quality-delta", "Change in accuracy and macro-F1 against " + base + " (percentage points)",
             "Δ vs " + base + " (percentage points)", {}, "data-variant",
             {{"Δ accuracy", {}, {}}, {"Δ macro-F1", {}, {}}}, {}, 0,
             [](double v) { return fmt::format("{:+.1f}", v); }};
  d.signed_axis = true;
  const auto& bm = *r.comparisons.front().metrics;
  for (size_t i = 1; i < r.variants.size(); ++i) {
    const auto& c = r.comparisons[i];
    d.groups.push_back(r.variants[i].name);
    d.series[0].values.push_back(100 * c.delta_accuracy);
    d.series[1].values.push_back(100 * (c.metrics->macro_f1 - bm.macro_f1));
    if (c.accuracy_difference) {
      const double mean = c.accuracy_difference->mean, half = kZ95 * c.accuracy_difference->se;
      d.series[0].errors.push_back({100 * (mean - half), 100 * (mean + half)});
    }
    if (c.macro_f1_delta_ci95)
      d.series[1].errors.push_back({100 * c.macro_f1_delta_ci95->low, 100 * c.macro_f1_delta_ci95->high});
  }
  // Every variant has an interval or none has (n < 2): never a partial set.
  for (auto& series : d.series)
    if (series.errors.size() != d.groups.size()) series.errors.clear();
  const std::string note = fmt::format(
      "Bar = variant − {} in percentage points; 0 = no change. Error bars, 95%, paired (the same {} samples): "
      "Δ accuracy ± 1.96·SE of the per-sample differences in correctness; Δ macro-F1: percentile bootstrap, {} "
      "resamples of the samples (macro-F1 is not a per-sample mean).",
      base, r.run.labels.size(), kBootstrapResamples);
  return figure("Quality: Δ accuracy and Δ macro-F1 against " + base, render_bar_chart(d), note);
}

std::string charts(const CompareResults& r) {
  const bool classify = r.run.task == Task::Classification;
  const auto names = variant_names(r);
  std::string o = "<div class=\"charts\">\n";
  if (classify && r.variants.size() > 1) o += quality_delta_chart(r);
  if (classify) {
    BarChart m{"metrics", "Accuracy and macro precision, recall, F1 per variant", "score", names, "data-variant",
               {{"accuracy", {}}, {"precision", {}}, {"recall", {}}, {"F1", {}}}, {}, 1.0,
               [](double v) { return fmt::format("{:.2f}", v); }};
    for (const auto& c : r.comparisons) {
      m.series[0].values.push_back(c.metrics->accuracy);
      m.series[1].values.push_back(c.metrics->macro_precision);
      m.series[2].values.push_back(c.metrics->macro_recall);
      m.series[3].values.push_back(c.metrics->macro_f1);
    }
    o += figure("Quality: accuracy and macro P / R / F1", render_bar_chart(m));
  } else {
    BarChart p{"perplexity", "Perplexity per variant (lower is better)", "perplexity", names, "data-variant",
               {{"perplexity", {}}}, {}, 0, [](double v) { return fmt::format("{:.2f}", v); }};
    for (const auto& v : r.variants) p.series[0].values.push_back(v.perplexity ? v.perplexity->ppl : 0.0);
    o += figure("Perplexity", render_bar_chart(p));
  }
  BarChart mem{"memory", "Weights held in memory (MB) with compression ratio against the baseline", "MB", names,
               "data-variant", {{"weights MB", {}}}, {}, 0, [](double v) { return fmt::format("{:.2f}", v); }};
  for (size_t i = 0; i < r.variants.size(); ++i) {
    mem.series[0].values.push_back(to_mb(r.variants[i].weight_bytes));
    mem.notes.push_back(fmt_ratio(r.comparisons[i].compression_ratio));
  }
  o += figure("Memory (MB) and compression ratio", render_bar_chart(mem));
  const std::string unit = classify ? "sample" : "window";
  BarChart lat{"latency", "Latency per " + unit + " (ms): mean, p50, p90, p99", "ms/" + unit, names, "data-variant",
               {{"mean", {}}, {"p50", {}}, {"p90", {}}, {"p99", {}}}, {}, 0,
               [](double v) { return fmt_ms(v); }};
  BarChart thr{"throughput", unit + "s per second with speedup against the baseline", unit + "s/s", names,
               "data-variant", {{unit + "s/s", {}}}, {}, 0, [](double v) { return fmt_rate(v); }};
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const auto& l = r.variants[i].latency;
    lat.series[0].values.push_back(l.mean_ms);
    lat.series[1].values.push_back(l.p50_ms);
    lat.series[2].values.push_back(l.p90_ms);
    lat.series[3].values.push_back(l.p99_ms);
    thr.series[0].values.push_back(l.samples_per_s);
    thr.notes.push_back(fmt_ratio(r.comparisons[i].speedup));
  }
  o += figure("Latency (ms/" + unit + ")", render_bar_chart(lat));
  o += figure("Throughput (" + unit + "s/s) and speedup", render_bar_chart(thr));
  if (classify) {
    BarChart f1{"per-class-f1", "F1 per class and variant", "F1", r.run.class_names, "data-class", {}, {}, 1.0,
                [](double v) { return fmt::format("{:.2f}", v); }};
    for (size_t i = 0; i < r.variants.size(); ++i) {
      BarSeries s{r.variants[i].name, {}};
      for (const auto& c : r.comparisons[i].metrics->per_class) s.values.push_back(c.f1);
      f1.series.push_back(s);
    }
    o += figure("Per-class F1", render_bar_chart(f1));
  }
  return o + "</div>\n";
}

}  // namespace

std::string report_html(const CompareResults& r) {
  const RunInfo& ri = r.run;
  const bool classify = ri.task == Task::Classification;
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  o += "<title>" + esc("gpt2q compare: " + ri.model) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<main>\n";
  o += "<h1>" + esc("Quantization comparison: " + ri.model) + "</h1>\n";
  o += "<p class=\"meta\">" +
       esc(fmt::format("{} · {} · gpt2q {} ({}) · {} threads on {}", classify ? ri.data : ri.text, ri.date_utc,
                       ri.gpt2q_version, ri.git_commit, ri.threads, ri.cpu)) +
       "</p>\n";
  o += "<section data-section=\"summary\"><h2>Executive summary</h2>\n<div class=\"summary\"><ul>\n";
  for (const auto& s : executive_summary(r)) o += "<li>" + esc(s) + "</li>\n";
  o += "</ul></div></section>\n";
  o += "<section data-section=\"charts\"><h2>Charts</h2>\n" + charts(r) + "</section>\n";
  o += "<section data-section=\"efficiency\"><h2>Efficiency</h2>\n" + html_table(efficiency_table(r), r.baseline()) +
       "</section>\n";
  o += "<section data-section=\"quality\"><h2>Quality</h2>\n" + html_table(quality_table(r), r.baseline());
  if (classify) o += "<h3>Per-class F1</h3>\n" + html_table(per_class_f1_table(r));
  o += "</section>\n";
  o += "<section data-section=\"findings\"><h2>Key findings</h2>\n" + list(r.findings, "findings") + "</section>\n";
  o += "<section data-section=\"recommendations\"><h2>Recommendations</h2>\n" +
       list(r.recommendations, "recommendations") + "</section>\n";
  if (classify) {
    o += "<section data-section=\"confusion\"><h2>Confusion matrices</h2>\n"
         "<p class=\"meta\">Rows = true class, columns = predicted; shade = share of the row.</p>\n"
         "<div class=\"heatmaps\">\n";
    for (size_t i = 0; i < r.variants.size(); ++i) {
      Heatmap h{"confusion", r.variants[i].name, "Confusion matrix of " + r.variants[i].name, ri.class_names,
                r.comparisons[i].metrics->confusion};
      o += figure(r.variants[i].name, render_heatmap(h));
    }
    o += "</div></section>\n";
    o += "<section data-section=\"details\"><h2>Per-variant details</h2>\n";
    for (size_t i = 0; i < r.variants.size(); ++i) {
      o += fmt::format("<details open data-variant=\"{}\"><summary>{}</summary>\n<p>{}</p>\n", esc(r.variants[i].name),
                       esc(r.variants[i].name), esc(r.variants[i].description));
      o += html_table(per_class_detail_table(r, i)) + "</details>\n";
    }
    o += "</section>\n";
  }
  o += "<section data-section=\"setup\"><h2>Setup</h2>\n" + html_table(setup_table(r)) +
       "<p>Command:</p>\n<pre data-command>" + esc(ri.command) + "</pre>\n</section>\n";
  o += "</main>\n<script>" + std::string(kScript) + "</script>\n</body>\n</html>\n";
  return o;
}

}  // namespace gpt2q::report
