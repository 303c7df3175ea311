#pragma once
// Inline SVG charts for report.html, generated as text: no scripts, no
// external resources. Every chart is
//   <svg class="chart" data-chart="ID" ...>
// with one <g class="group" data-ATTR="NAME"> per category (data-variant for
// variants, data-class for classes) and one <rect class="bar"
// data-series="..." data-value="..."> per bar, so tests and readers can find
// the numbers behind each shape. Colours are the Okabe-Ito palette (readable
// by colour-blind readers and in greyscale print, with values printed too).
#include <functional>
#include <string>
#include <vector>

namespace gpt2q::report {

std::string html_escape(const std::string& s);

// The i-th colour of the palette: 16 distinct colours, then it wraps around.
const char* series_colour(size_t i);

struct BarSeries {
  std::string name;
  std::vector<double> values;  // one per group
};

struct BarChart {
  std::string id;                           // data-chart
  std::string title;                        // <title> and aria-label
  std::string y_label;                      // axis caption
  std::vector<std::string> groups;          // categories along x
  std::string group_attr = "data-variant";  // attribute naming each group
  std::vector<BarSeries> series;            // bars of each group, left to right
  std::vector<std::string> notes;           // optional text above each group (e.g. "3.9×")
  double y_max = 0;                         // 0: the largest value, rounded up
  std::function<std::string(double)> value_text;  // label on each bar; none when empty
};
std::string render_bar_chart(const BarChart& c);

struct Heatmap {
  std::string id = "confusion";
  std::string variant;  // data-variant
  std::string title;
  std::vector<std::string> labels;            // class names (rows = true, columns = predicted)
  std::vector<std::vector<int64_t>> counts;   // [true][pred]
};
// Cells shaded by their share of the row (recall view), counts printed in each.
std::string render_heatmap(const Heatmap& h);

// A "nice" axis maximum >= v (1, 2, 2.5, 5 × 10^k).
double nice_ceiling(double v);

}  // namespace gpt2q::report
