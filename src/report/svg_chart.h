#pragma once
// Inline SVG charts for report.html, generated as text: no scripts, no
// external resources. Every chart is
//   <svg class="chart" data-chart="ID" ...>
// with one <g class="group" data-ATTR="NAME"> per category (data-variant for
// variants, data-class for classes) and one <rect class="bar"
// data-series="..." data-value="..."> per bar, so tests and readers can find
// the numbers behind each shape. Colours are the Okabe-Ito palette (readable
// by colour-blind readers and in greyscale print, with values printed too)
// up to 8 categories, generated evenly spaced hues beyond (category_palette).
#include <functional>
#include <string>
#include <vector>

namespace gpt2q::report {

std::string html_escape(const std::string& s);

// The i-th colour of the palette: 16 distinct colours, then it wraps around.
const char* series_colour(size_t i);

// n distinct colours ("#rrggbb") for n categories: Okabe-Ito when n <= 8;
// beyond, n hues evenly spaced around the OKLCH circle at one lightness and
// chroma (perceptually similar weight, none repeated), converted to sRGB.
// Deterministic: the same n always gives the same list.
std::vector<std::string> category_palette(size_t n);

struct ErrorBar {
  double low = 0, high = 0;  // in the chart's units, low <= value <= high expected but not required
};

struct BarSeries {
  std::string name;
  std::vector<double> values;    // one per group
  std::vector<ErrorBar> errors = {};  // one per group, or empty for no error bars
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
  // Signed: the axis spans the values and error bars on both sides of 0
  // (y_max ignored), bars grow up or down from a zero line.
  bool signed_axis = false;
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
