#include "report/svg_chart.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace gpt2q::report {

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* series_colour(size_t i) {
  // Okabe-Ito first; then Paul Tol's muted colours, so that up to 16
  // variants (a long --variants list) get distinct bars.
  static const char* palette[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                                  "#F0E442", "#000000", "#882255", "#44AA99", "#999933", "#AA4499",
                                  "#88CCEE", "#DDCC77", "#117733", "#332288"};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

double nice_ceiling(double v) {
  if (!(v > 0) || !std::isfinite(v)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

namespace {
std::string num(double v) { return fmt::format("{:.2f}", v); }
}  // namespace

std::string render_bar_chart(const BarChart& c) {
  const double W = 760, left = 70, right = 16, bottom = 84, plot_h = 212;
  // Legend (one entry per series) first: it wraps into rows, which push the plot down.
  std::string legend;
  double lx = left, ly = 14;
  if (c.series.size() > 1) {
    legend += "<g class=\"legend\">";
    for (size_t s = 0; s < c.series.size(); ++s) {
      const double w = 30 + 8.5 * static_cast<double>(c.series[s].name.size());
      if (lx + w > W - right && lx > left) {
        lx = left;
        ly += 20;
      }
      legend += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>"
                            "<text x=\"{}\" y=\"{}\" class=\"legend-text\">{}</text>",
                            num(lx), num(ly), series_colour(s), num(lx + 16), num(ly + 11), html_escape(c.series[s].name));
      lx += w;
    }
    legend += "</g>\n";
  }
  const double top = ly + 44, H = top + plot_h + bottom;
  const double plot_w = W - left - right;
  double ymax = c.y_max;
  if (ymax <= 0) {
    for (const auto& s : c.series)
      for (double v : s.values) ymax = std::max(ymax, v);
    ymax = nice_ceiling(ymax);
  }
  const size_t G = c.groups.size(), S = std::max<size_t>(1, c.series.size());
  const double group_w = G ? plot_w / static_cast<double>(G) : plot_w;
  const double bar_w = std::min(48.0, group_w * 0.8 / static_cast<double>(S));
  std::string o = fmt::format(
      "<svg class=\"chart\" data-chart=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" "
      "xmlns=\"http://www.w3.org/2000/svg\">\n<title>{}</title>\n",
      html_escape(c.id), W, H, html_escape(c.title), html_escape(c.title));
  o += legend;
  o += "<g class=\"axis\">";
  for (int t = 0; t <= 5; ++t) {
    const double v = ymax * t / 5, y = top + plot_h - plot_h * t / 5;
    o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"grid\"/>"
                     "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"tick\">{}</text>",
                     num(left), num(y), num(W - right), num(y), num(left - 6), num(y + 4), fmt::format("{:g}", v));
  }
  o += fmt::format("<text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\" class=\"axis-label\">{}</text>",
                   num(top + plot_h / 2), html_escape(c.y_label));
  o += "</g>\n";
  for (size_t g = 0; g < G; ++g) {
    const double gx = left + group_w * static_cast<double>(g);
    const double x0 = gx + (group_w - bar_w * static_cast<double>(S)) / 2;
    o += fmt::format("<g class=\"group\" {}=\"{}\">", c.group_attr, html_escape(c.groups[g]));
    for (size_t s = 0; s < c.series.size(); ++s) {
      const double v = c.series[s].values.at(g);
      const double h = ymax > 0 ? std::clamp(v / ymax, 0.0, 1.0) * plot_h : 0;
      const double x = x0 + bar_w * static_cast<double>(s), y = top + plot_h - h;
      o += fmt::format("<rect class=\"bar\" data-series=\"{}\" data-value=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" "
                       "height=\"{}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                       html_escape(c.series[s].name), fmt::format("{}", v), num(x), num(y), num(bar_w - 2), num(h),
                       series_colour(c.series.size() > 1 ? s : g), html_escape(c.groups[g]),
                       html_escape(c.series[s].name), c.value_text ? html_escape(c.value_text(v)) : fmt::format("{}", v));
      if (c.value_text && S <= 2)
        o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"value\">{}</text>",
                         num(x + (bar_w - 2) / 2), num(y - 4), html_escape(c.value_text(v)));
    }
    if (g < c.notes.size() && !c.notes[g].empty())
      o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"note\">{}</text>", num(gx + group_w / 2),
                       num(top - 20), html_escape(c.notes[g]));
    // Category label, slanted so long variant names fit.
    o += fmt::format("<text transform=\"translate({} {}) rotate(-20)\" text-anchor=\"end\" class=\"category\">{}</text>",
                     num(gx + group_w / 2 + 4), num(top + plot_h + 16), html_escape(c.groups[g]));
    o += "</g>\n";
  }
  o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"baseline-axis\"/>\n", num(left),
                   num(top + plot_h), num(W - right), num(top + plot_h));
  o += "</svg>\n";
  return o;
}

std::string render_heatmap(const Heatmap& h) {
  const size_t K = h.labels.size();
  const double cell = K <= 4 ? 64 : std::max(22.0, 256.0 / static_cast<double>(K));
  const double left = 110, top = 64;
  const double W = left + cell * static_cast<double>(K) + 16, H = top + cell * static_cast<double>(K) + 40;
  std::string o = fmt::format(
      "<svg class=\"chart heatmap\" data-chart=\"{}\" data-variant=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" "
      "aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">\n<title>{}</title>\n",
      html_escape(h.id), html_escape(h.variant), num(W), num(H), html_escape(h.title), html_escape(h.title));
  o += fmt::format("<text x=\"{}\" y=\"14\" text-anchor=\"middle\" class=\"axis-label\">predicted</text>",
                   num(left + cell * static_cast<double>(K) / 2));
  o += fmt::format("<text transform=\"translate(12 {}) rotate(-90)\" text-anchor=\"middle\" class=\"axis-label\">true</text>",
                   num(top + cell * static_cast<double>(K) / 2));
  for (size_t c = 0; c < K; ++c)
    o += fmt::format("<text transform=\"translate({} {}) rotate(-30)\" class=\"category\">{}</text>",
                     num(left + cell * (static_cast<double>(c) + 0.3)), num(top - 6), html_escape(h.labels[c]));
  for (size_t t = 0; t < K; ++t) {
    int64_t row_sum = 0;
    for (int64_t v : h.counts.at(t)) row_sum += v;
    const double y = top + cell * static_cast<double>(t);
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"category\">{}</text>", num(left - 6),
                     num(y + cell / 2 + 4), html_escape(h.labels[t]));
    for (size_t p = 0; p < K; ++p) {
      const int64_t v = h.counts[t].at(p);
      const double share = row_sum > 0 ? static_cast<double>(v) / static_cast<double>(row_sum) : 0.0;
      const double x = left + cell * static_cast<double>(p);
      // White to the palette's blue; dark text on light cells, white on dark ones.
      const int r = static_cast<int>(255 - share * (255 - 0x00)), g = static_cast<int>(255 - share * (255 - 0x72)),
                b = static_cast<int>(255 - share * (255 - 0xB2));
      o += fmt::format("<rect class=\"cell\" data-true=\"{}\" data-pred=\"{}\" data-value=\"{}\" x=\"{}\" y=\"{}\" "
                       "width=\"{}\" height=\"{}\" fill=\"rgb({},{},{})\"/>"
                       "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"cell-text{}\">{}</text>",
                       t, p, v, num(x), num(y), num(cell - 1), num(cell - 1), r, g, b, num(x + cell / 2),
                       num(y + cell / 2 + 4), share > 0.5 ? " dark" : "", v);
    }
  }
  o += "</svg>\n";
  return o;
}

}  // namespace gpt2q::report
