// The report's quality chart shows changes against the baseline: Δ bars with
// the right sign and length around a zero line, the paired 95% interval of
// Δ accuracy as error bars, and a colour per variant however many there are.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "report/report_html.h"
#include "report/svg_chart.h"
#include "test_report_support.h"

namespace gpt2q::report {
namespace {

using test::count_of;
using test::first_n;
using test::VariantPlan;

struct Bar {
  double value = 0, y = 0, height = 0;
  std::string fill;
};

// Bars of one series in a chart, by group (data-variant), in order.
std::map<std::string, Bar> bars(const std::string& svg, const std::string& series) {
  std::map<std::string, Bar> out;
  const std::regex group(R"re(<g class="group" data-variant="([^"]*)">)re");
  const std::regex bar("<rect class=\"bar\" data-series=\"" + series +
                       R"re(" data-value="([^"]*)" x="[^"]*" y="([^"]*)" width="[^"]*" height="([^"]*)" fill="([^"]*)")re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), group); it != std::sregex_iterator(); ++it) {
    const size_t from = static_cast<size_t>(it->position()), to = svg.find("</g>", from);
    const std::string g = svg.substr(from, to - from);
    std::smatch m;
    if (std::regex_search(g, m, bar))
      out[(*it)[1]] = {std::stod(m[1]), std::stod(m[2]), std::stod(m[3]), m[4]};
  }
  return out;
}

double attr(const std::string& s, const std::string& element_start, const std::string& name) {
  const size_t at = s.find(element_start);
  EXPECT_NE(at, std::string::npos) << element_start;
  if (at == std::string::npos) return NAN;
  const size_t v = s.find(name + "=\"", at) + name.size() + 2;
  return std::stod(s.substr(v, s.find('"', v) - v));
}

// Baseline wrong on 20 of 200 samples; "better" on 10 (Δ = +5 pp), "worse" on
// 40 (Δ = −10 pp), "same" on the baseline's 20 (Δ = 0).
CompareResults crafted() {
  return test::synthetic_results(200, 4,
                                 {{"fp32", 4'000'000, 1.0, first_n(0, 20)},
                                  {"better", 1'000'000, 0.8, first_n(0, 10)},
                                  {"worse", 900'000, 0.7, first_n(0, 40)},
                                  {"same", 1'100'000, 0.9, first_n(0, 20)}});
}

// Paired normal 95% interval of Δ accuracy from the 0/1 correctness of each
// sample, computed here from scratch: mean ± z·sd/√n, sd with n − 1.
std::pair<double, double> paired_interval(size_t n, size_t base_wrong, size_t cand_wrong) {
  std::vector<double> d(n, 0.0);
  for (size_t i = 0; i < n; ++i) d[i] = (i < cand_wrong ? 0.0 : 1.0) - (i < base_wrong ? 0.0 : 1.0);
  double mean = 0, ss = 0;
  for (double x : d) mean += x;
  mean /= static_cast<double>(n);
  for (double x : d) ss += (x - mean) * (x - mean);
  const double se = std::sqrt(ss / static_cast<double>(n - 1) / static_cast<double>(n));
  return {100 * (mean - 1.959963984540054 * se), 100 * (mean + 1.959963984540054 * se)};
}

TEST(QualityDeltaChart, BarsHaveTheSignAndLengthOfTheChange) {
  const auto r = crafted();
  const std::string html = report_html(r);
  const std::string svg = test::svg_element(html, "quality-delta");
  ASSERT_FALSE(svg.empty());
  // The baseline is the zero line, not a group.
  EXPECT_EQ(count_of(svg, "class=\"group\" data-variant="), 3u);
  EXPECT_EQ(count_of(svg, "data-variant=\"fp32\""), 0u);
  EXPECT_NE(svg.find("percentage points"), std::string::npos);
  EXPECT_NE(svg.find("class=\"tick\">0</text>"), std::string::npos);
  const double zero_y = attr(svg, "<line class=\"zero-line\"", "y1");

  const auto acc = bars(svg, "Δ accuracy");
  ASSERT_EQ(acc.size(), 3u);
  EXPECT_NEAR(acc.at("better").value, 5.0, 1e-9);
  EXPECT_NEAR(acc.at("worse").value, -10.0, 1e-9);
  EXPECT_NEAR(acc.at("same").value, 0.0, 1e-9);
  // Up from the zero line for a gain, down for a loss; lengths in proportion.
  EXPECT_NEAR(acc.at("better").y + acc.at("better").height, zero_y, 0.011);
  EXPECT_NEAR(acc.at("worse").y, zero_y, 0.011);
  EXPECT_GT(acc.at("better").height, 1.0);
  EXPECT_NEAR(acc.at("worse").height / acc.at("better").height, 2.0, 0.01);
  EXPECT_NEAR(acc.at("same").height, 0.0, 0.011);

  // Macro-F1 bars: same sign as the accuracy change here (errors spread over classes).
  const auto f1 = bars(svg, "Δ macro-F1");
  ASSERT_EQ(f1.size(), 3u);
  for (const auto& [name, b] : f1) {
    const auto& c = r.comparisons[name == "better" ? 1 : name == "worse" ? 2 : 3];
    EXPECT_NEAR(b.value, 100 * (c.metrics->macro_f1 - r.comparisons[0].metrics->macro_f1), 1e-9) << name;
  }
  EXPECT_GT(f1.at("better").value, 0);
  EXPECT_LT(f1.at("worse").value, 0);
  EXPECT_NEAR(f1.at("worse").y, zero_y, 0.011);
}

TEST(QualityDeltaChart, ErrorBarsArePairedIntervals) {
  const auto r = crafted();
  const std::string svg = test::svg_element(report_html(r), "quality-delta");
  EXPECT_EQ(count_of(svg, "class=\"error-bar\" data-series=\"Δ accuracy\""), 3u);
  EXPECT_EQ(count_of(svg, "class=\"error-bar\" data-series=\"Δ macro-F1\""), 3u);
  const std::map<std::string, size_t> wrong{{"better", 10}, {"worse", 40}, {"same", 20}};
  for (const auto& [name, w] : wrong) {
    const size_t g = svg.find("data-variant=\"" + name + "\"");
    ASSERT_NE(g, std::string::npos);
    const std::string group = svg.substr(g, svg.find("</g>", g) - g);
    const auto [low, high] = paired_interval(200, 20, w);
    EXPECT_NEAR(attr(group, "class=\"error-bar\"", "data-low"), low, 1e-9) << name;
    EXPECT_NEAR(attr(group, "class=\"error-bar\"", "data-high"), high, 1e-9) << name;
  }
  // No disagreement at all: the interval collapses onto 0.
  const auto [low, high] = paired_interval(200, 20, 20);
  EXPECT_EQ(low, 0);
  EXPECT_EQ(high, 0);
  // "better" and "worse" are both clear of 0 with these counts.
  EXPECT_GT(paired_interval(200, 20, 10).first, 0);
  EXPECT_LT(paired_interval(200, 20, 40).second, 0);
  // The same interval is in results.json.
  const auto j = results_to_json(r);
  EXPECT_NEAR(j["variants"][2]["vs_baseline"]["delta_accuracy_ci95"][0].get<double>() * 100,
              paired_interval(200, 20, 40).first, 1e-9);
  EXPECT_FALSE(j["variants"][0]["vs_baseline"].contains("delta_accuracy_ci95"));
  // Δ macro-F1: the bootstrap interval of paired_stats, in the chart (pp)
  // and in results.json (fractions), around the observed Δ.
  for (size_t i = 1; i < r.variants.size(); ++i) {
    const auto& c = r.comparisons[i];
    ASSERT_TRUE(c.macro_f1_delta_ci95.has_value());
    const std::string name = r.variants[i].name;
    const size_t g = svg.find("data-variant=\"" + name + "\"");
    const std::string group = svg.substr(g, svg.find("</g>", g) - g);
    const size_t f1_bar = group.find("class=\"error-bar\" data-series=\"Δ macro-F1\"");
    ASSERT_NE(f1_bar, std::string::npos) << name;
    EXPECT_NEAR(attr(group.substr(f1_bar), "class=\"error-bar\"", "data-low"), 100 * c.macro_f1_delta_ci95->low, 1e-9);
    EXPECT_NEAR(attr(group.substr(f1_bar), "class=\"error-bar\"", "data-high"), 100 * c.macro_f1_delta_ci95->high, 1e-9);
    const auto& vs = j["variants"][i]["vs_baseline"];
    EXPECT_EQ(vs["delta_macro_f1_ci95"][0].get<double>(), c.macro_f1_delta_ci95->low);
    const double delta = c.metrics->macro_f1 - r.comparisons[0].metrics->macro_f1;
    EXPECT_LE(c.macro_f1_delta_ci95->low, delta + 1e-12) << name;
    EXPECT_GE(c.macro_f1_delta_ci95->high, delta - 1e-12) << name;
  }
}

TEST(QualityDeltaChart, CaptionSaysWhatTheIntervalIs) {
  const std::string html = report_html(crafted());
  const size_t at = html.find("data-chart=\"quality-delta\"");
  ASSERT_NE(at, std::string::npos);
  const size_t note = html.find("<p class=\"chart-note\">", at);
  ASSERT_NE(note, std::string::npos);
  const std::string text = html.substr(note, html.find("</p>", note) - note);
  EXPECT_NE(text.find("Δ accuracy ± 1.96·SE"), std::string::npos) << text;
  EXPECT_NE(text.find("percentile bootstrap, 1000 resamples"), std::string::npos) << text;
}

TEST(QualityDeltaChart, AbsentWithTheBaselineAlone) {
  const auto r = test::synthetic_results(40, 4, {{"fp32", 4'000'000, 1.0, first_n(0, 4)}});
  EXPECT_TRUE(test::svg_element(report_html(r), "quality-delta").empty());
}

TEST(CategoryPalette, OkabeItoUpToEightThenEvenHues) {
  EXPECT_EQ(category_palette(3), (std::vector<std::string>{"#0072B2", "#E69F00", "#009E73"}));
  for (size_t n : {9u, 12u, 16u, 24u, 40u}) {
    const auto p = category_palette(n);
    ASSERT_EQ(p.size(), n);
    EXPECT_EQ(std::set<std::string>(p.begin(), p.end()).size(), n) << n;
    for (const auto& c : p) EXPECT_TRUE(std::regex_match(c, std::regex("#[0-9A-F]{6}"))) << c;
    EXPECT_EQ(category_palette(n), p) << "deterministic";
  }
}

TEST(CategoryPalette, TwelveVariantsGetTwelveColoursInEveryChart) {
  std::vector<VariantPlan> plans;
  for (size_t i = 0; i < 12; ++i)
    plans.push_back({i == 0 ? std::string("fp32") : "v" + std::to_string(i), 1'000'000 + i, 1.0 + 0.1 * static_cast<double>(i),
                     first_n(i, 5)});
  const std::string html = report_html(test::synthetic_results(60, 4, plans));
  const std::regex fill(R"re(<rect class="bar"[^>]* fill="([^"]*)")re");
  const auto fills = [&](const std::string& svg) {
    std::set<std::string> s;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), fill); it != std::sregex_iterator(); ++it)
      s.insert((*it)[1]);
    return s;
  };
  // One bar per variant, coloured by variant.
  EXPECT_EQ(fills(test::svg_element(html, "memory")).size(), 12u);
  EXPECT_EQ(fills(test::svg_element(html, "throughput")).size(), 12u);
  // Variants as series: the legend and the bars carry 12 colours.
  const std::string f1 = test::svg_element(html, "per-class-f1");
  EXPECT_EQ(fills(f1).size(), 12u);
  EXPECT_EQ(count_of(f1, "width=\"12\" height=\"12\""), 12u);
}

}  // namespace
}  // namespace gpt2q::report
