// The report files say what results.json says: every variant's figures in
// report.md, report.html (tables and chart data), results.csv and the
// confusion CSVs are checked against the JSON's values.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "core/error.h"
#include "io/dataset.h"
#include "report/number_format.h"
#include "report/report_html.h"
#include "report/report_markdown.h"
#include "report/svg_chart.h"
#include "test_report_support.h"

namespace gpt2q::report {
namespace {

using nlohmann::json;
using test::first_n;

CompareResults sample() {
  return test::synthetic_results(120, 4,
                                 {{"fp32", 5'000'000, 1.25, first_n(0, 12)},
                                  {"int8-tensor:per-channel", 1'400'000, 0.9, first_n(0, 14)},
                                  {"nf4", 900'000, 1.7, first_n(3, 20, 2)}});
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

using test::count_of;

std::string chart(const std::string& html, const std::string& id, size_t nth = 0) {
  return test::svg_element(html, id, nth);
}

TEST(ResultsJson, HoldsEveryMeasurement) {
  const auto r = sample();
  const json j = results_to_json(r);
  EXPECT_EQ(j["schema"], "gpt2q.compare/1");
  EXPECT_EQ(j["run"]["baseline"], "fp32");
  EXPECT_EQ(j["run"]["task"], "classification");
  EXPECT_EQ(j["run"]["git_commit"], "abc1234");
  ASSERT_EQ(j["variants"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const auto& v = j["variants"][i];
    const auto& c = r.comparisons[i];
    EXPECT_EQ(v["name"], r.variants[i].name);
    EXPECT_EQ(v["memory"]["weight_bytes"], r.variants[i].weight_bytes);
    EXPECT_DOUBLE_EQ(v["memory"]["weight_mb"], r.variants[i].weight_bytes / 1e6);
    EXPECT_DOUBLE_EQ(v["memory"]["compression_ratio"], c.compression_ratio);
    EXPECT_DOUBLE_EQ(v["latency"]["speedup"], c.speedup);
    EXPECT_DOUBLE_EQ(v["quality"]["accuracy"], c.metrics->accuracy);
    EXPECT_DOUBLE_EQ(v["quality"]["accuracy_ci95"][0], c.metrics->accuracy_ci95.low);
    EXPECT_EQ(v["quality"]["per_class"].size(), 4u);
    EXPECT_DOUBLE_EQ(v["vs_baseline"]["agreement"], c.agreement);
    EXPECT_DOUBLE_EQ(v["vs_baseline"]["kl"]["mean"], c.divergence->kl_mean);
    EXPECT_DOUBLE_EQ(v["vs_baseline"]["mcnemar"]["p_value"], c.mcnemar->p_value);
  }
  EXPECT_EQ(j["findings"].size(), r.findings.size());
  EXPECT_EQ(j["recommendations"].size(), r.recommendations.size());
}

TEST(ResultsJson, MeasurementCacheRoundTrips) {
  const auto r = sample();
  const auto& m = r.variants[2];
  const auto back = measurement_from_json(json::parse(measurement_to_json(m).dump()));
  EXPECT_EQ(back.name, m.name);
  EXPECT_EQ(back.predictions, m.predictions);
  EXPECT_EQ(back.logits, m.logits);
  EXPECT_EQ(back.weight_bytes, m.weight_bytes);
  EXPECT_EQ(back.components, m.components);
  EXPECT_DOUBLE_EQ(back.latency.p99_ms, m.latency.p99_ms);
  json bad = measurement_to_json(m);
  bad["logits"].erase(0);
  EXPECT_THROW(measurement_from_json(bad), Error);
  bad.erase("latency");
  EXPECT_THROW(measurement_from_json(bad), Error);
}

TEST(ResultsCsv, OneRowPerVariantEqualToJson) {
  const auto r = sample();
  const json j = results_to_json(r);
  const auto rows = parse_csv(results_csv(r), "results.csv");
  ASSERT_EQ(rows.size(), 4u);
  const auto& h = rows[0].fields;
  auto col = [&](const std::string& name) {
    const size_t c = std::find(h.begin(), h.end(), name) - h.begin();
    EXPECT_LT(c, h.size()) << name;
    return c;
  };
  for (size_t i = 0; i < 3; ++i) {
    const auto& f = rows[i + 1].fields;
    const auto& v = j["variants"][i];
    ASSERT_EQ(f.size(), h.size());
    EXPECT_EQ(f[col("variant")], v["name"]);
    EXPECT_EQ(std::stoull(f[col("weight_bytes")]), v["memory"]["weight_bytes"].get<size_t>());
    EXPECT_EQ(std::stod(f[col("accuracy")]), v["quality"]["accuracy"].get<double>());
    EXPECT_EQ(std::stod(f[col("macro_f1")]), v["quality"]["macro_f1"].get<double>());
    EXPECT_EQ(std::stod(f[col("latency_p99_ms")]), v["latency"]["p99_ms"].get<double>());
    EXPECT_EQ(std::stod(f[col("compression_ratio")]), v["memory"]["compression_ratio"].get<double>());
    EXPECT_EQ(std::stod(f[col("kl_mean")]), v["vs_baseline"]["kl"]["mean"].get<double>());
    EXPECT_EQ(std::stod(f[col("mcnemar_p")]), v["vs_baseline"]["mcnemar"]["p_value"].get<double>());
  }
}

TEST(ConfusionCsv, RowsAreTrueClasses) {
  const auto r = sample();
  const auto rows = parse_csv(confusion_csv(*r.comparisons[2].metrics, r.run.class_names), "c.csv");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].fields[2], "Sci/Tech & <b>");
  const json cm = results_to_json(r)["variants"][2]["quality"]["confusion_matrix"];
  for (size_t t = 0; t < 4; ++t)
    for (size_t p = 0; p < 4; ++p) EXPECT_EQ(std::stoll(rows[t + 1].fields[p + 1]), cm[t][p].get<int64_t>());
}

TEST(ReportMarkdown, StatesTheJsonFigures) {
  const auto r = sample();
  const json j = results_to_json(r);
  const std::string md = report_markdown(r);
  for (const char* h : {"## Executive summary", "## Efficiency", "## Quality", "## Per-class F1", "## Key findings",
                        "## Recommendations", "## Setup"})
    EXPECT_TRUE(contains(md, h)) << h;
  for (const auto& v : j["variants"]) {
    const std::string name = v["name"];
    // Efficiency row: name, MB, MiB, compression.
    EXPECT_TRUE(contains(md, fmt::format("| {} | {:.3f} | {:.3f} | {} |", name, v["memory"]["weight_mb"].get<double>(),
                                         v["memory"]["weight_mib"].get<double>(),
                                         fmt_ratio(v["memory"]["compression_ratio"]))))
        << name;
    // Quality row: accuracy and CI.
    EXPECT_TRUE(contains(md, fmt::format("| {} | {} | {} – {} |", name, fmt_pct(v["quality"]["accuracy"]),
                                         fmt_pct(v["quality"]["accuracy_ci95"][0]),
                                         fmt_pct(v["quality"]["accuracy_ci95"][1]))))
        << name;
  }
  // Per-class F1 row of class 0: one F1 per variant.
  std::string row = fmt::format("| class0 | {} |", j["variants"][0]["quality"]["per_class"][0]["support"].get<int64_t>());
  for (const auto& v : j["variants"]) row += fmt::format(" {} |", fmt_f(v["quality"]["per_class"][0]["f1"]));
  EXPECT_TRUE(contains(md, row)) << row;
  for (const auto& f : j["findings"]) EXPECT_TRUE(contains(md, "- " + f["text"].get<std::string>()));
  for (const auto& f : j["recommendations"]) EXPECT_TRUE(contains(md, "- " + f["text"].get<std::string>()));
  EXPECT_TRUE(contains(md, "```sh\n" + j["run"]["command"].get<std::string>() + "\n```"));
  EXPECT_TRUE(contains(md, "9.9.9 (commit abc1234)"));
  EXPECT_TRUE(contains(md, "| threads | 2 |"));
  EXPECT_TRUE(contains(md, "Test CPU @ 1 GHz"));
}

TEST(ReportHtml, ChartsAndTablesCarryEveryVariant) {
  const auto r = sample();
  const json j = results_to_json(r);
  const std::string html = report_html(r);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_TRUE(contains(html, "@media print"));
  // Self-contained: nothing fetched.
  EXPECT_FALSE(contains(html, "src=\"http")) << "external resource";
  EXPECT_FALSE(contains(html, "<link"));
  EXPECT_FALSE(contains(html, "@import"));
  // Escaped class names, never raw markup.
  EXPECT_FALSE(contains(html, "& <b>"));
  EXPECT_TRUE(contains(html, "Sci/Tech &amp; &lt;b&gt;"));
  for (const char* id : {"metrics", "memory", "latency", "throughput"}) {
    const std::string svg = chart(html, id);
    ASSERT_FALSE(svg.empty()) << id;
    EXPECT_EQ(count_of(svg, "class=\"group\" data-variant="), 3u) << id;
  }
  EXPECT_EQ(count_of(chart(html, "per-class-f1"), "class=\"group\" data-class="), 4u);
  EXPECT_EQ(count_of(chart(html, "per-class-f1"), "<rect class=\"bar\""), 12u);
  EXPECT_EQ(count_of(html, "data-chart=\"confusion\""), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const auto& v = j["variants"][i];
    const std::string name = v["name"];
    // Metrics bars hold the JSON values.
    const std::string m = chart(html, "metrics");
    const size_t g = m.find("data-variant=\"" + name + "\"");
    ASSERT_NE(g, std::string::npos);
    EXPECT_TRUE(contains(m.substr(g, m.find("</g>", g) - g),
                         fmt::format("data-series=\"accuracy\" data-value=\"{}\"", v["quality"]["accuracy"].get<double>())));
    EXPECT_TRUE(contains(chart(html, "memory"), fmt::format("data-value=\"{}\"", v["memory"]["weight_mb"].get<double>())));
    EXPECT_TRUE(contains(chart(html, "memory"), fmt_ratio(v["memory"]["compression_ratio"])));
    // Confusion heatmap cells equal the matrix.
    const std::string cm = chart(html, "confusion", i);
    EXPECT_TRUE(contains(cm, "data-variant=\"" + name + "\""));
    EXPECT_EQ(count_of(cm, "<rect class=\"cell\""), 16u);
    for (size_t t = 0; t < 4; ++t)
      for (size_t p = 0; p < 4; ++p)
        EXPECT_TRUE(contains(cm, fmt::format("data-true=\"{}\" data-pred=\"{}\" data-value=\"{}\"", t, p,
                                             v["quality"]["confusion_matrix"][t][p].get<int64_t>())));
  }
  for (const char* t : {"efficiency", "quality"}) {
    const std::string table = test::table_element(html, t);
    ASSERT_FALSE(table.empty()) << t;
    EXPECT_EQ(count_of(table, "<tr data-variant="), 3u) << t;
  }
  EXPECT_EQ(count_of(html, "data-table=\"per-class-f1\""), 1u);
  EXPECT_EQ(count_of(html, "<li data-kind="), r.findings.size() + r.recommendations.size());
}

TEST(SvgChart, NiceCeiling) {
  EXPECT_DOUBLE_EQ(nice_ceiling(0.93), 1.0);
  EXPECT_DOUBLE_EQ(nice_ceiling(3.2), 5.0);
  EXPECT_DOUBLE_EQ(nice_ceiling(2.0), 2.0);
  EXPECT_DOUBLE_EQ(nice_ceiling(2.2), 2.5);
  EXPECT_DOUBLE_EQ(nice_ceiling(0), 1.0);
  EXPECT_DOUBLE_EQ(nice_ceiling(730), 1000.0);
}

// A long --variants list (the pipeline compares 9) must not give two variants
// the same bar colour.
TEST(SvgChart, SixteenDistinctColoursThenWraps) {
  std::set<std::string> seen;
  for (size_t i = 0; i < 16; ++i) seen.insert(series_colour(i));
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_STREQ(series_colour(16), series_colour(0));
}

}  // namespace
}  // namespace gpt2q::report
