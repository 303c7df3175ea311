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


namespace {
// OKLab (Björn Ottosson's matrices) to an sRGB byte, gamma-encoded and clamped.
std::string oklch_hex(double L, double C, double hue_deg) {
  const double h = hue_deg * 3.14159265358979323846 / 180.0;
  const double a = C * std::cos(h), b = C * std::sin(h);
  const double l = std::pow(L + 0.3963377774 * a + 0.2158037573 * b, 3);
  const double m = std::pow(L - 0.1055613458 * a - 0.0638541728 * b, 3);
  const double s = std::pow(L - 0.0894841775 * a - 1.2914855480 * b, 3);
  const double lin[3] = {4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
                         -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
                         -0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s};
  int byte[3];
  for (int k = 0; k < 3; ++k) {
    const double x = std::clamp(lin[k], 0.0, 1.0);
    const double g = x <= 0.0031308 ? 12.92 * x : 1.055 * std::pow(x, 1 / 2.4) - 0.055;
    byte[k] = static_cast<int>(std::lround(std::clamp(g, 0.0, 1.0) * 255));
  }
  return fmt::format("#{:02X}{:02X}{:02X}", byte[0], byte[1], byte[2]);
}
}  // namespace

std::vector<std::string> category_palette(size_t n) {
  std::vector<std::string> out;
  if (n <= 8) {
    // Okabe-Ito: safe for colour-blind readers while there are few enough categories.
    for (size_t i = 0; i < n; ++i) out.push_back(series_colour(i));
    return out;
  }
  // More categories than any fixed qualitative palette separates well: spread
  // the hues evenly (starting at 250°, a blue, like Okabe-Ito's first) at a
  // mid lightness and a chroma that stays inside sRGB for most hues, so that
  // no colour stands out and none repeats.
  for (size_t i = 0; i < n; ++i)
    out.push_back(oklch_hex(0.62, 0.13, 250.0 + 360.0 * static_cast<double>(i) / static_cast<double>(n)));
  return out;
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
  const size_t G = c.groups.size(), S = std::max<size_t>(1, c.series.size());
  // One colour per series when there are several (the legend names them),
  // else one per group (the x labels name them).
  const auto colours = category_palette(c.series.size() > 1 ? c.series.size() : G);
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
                            num(lx), num(ly), colours[s], num(lx + 16), num(ly + 11), html_escape(c.series[s].name));
      lx += w;
    }
    legend += "</g>\n";
  }
  const double top = ly + 44, H = top + plot_h + bottom;
  const double plot_w = W - left - right;
  // Axis range [lo, hi] and its ticks.
  double lo = 0, hi = c.y_max;
  std::vector<double> ticks;
  if (c.signed_axis) {
    for (const auto& s : c.series) {
      for (double v : s.values) lo = std::min(lo, v), hi = std::max(hi, v);
      for (const auto& e : s.errors) lo = std::min(lo, e.low), hi = std::max(hi, e.high);
    }
    if (!(hi > lo)) hi = 1;
    // About five steps of a nice size; ticks are integer multiples of it, so 0 is one exactly.
    const double step = nice_ceiling((hi - lo) / 5);
    const double k_lo = std::floor(lo / step + 1e-9), k_hi = std::ceil(hi / step - 1e-9);
    lo = k_lo * step;
    hi = k_hi * step;
    for (double k = k_lo; k <= k_hi; ++k) ticks.push_back(k == 0 ? 0.0 : k * step);
  } else {
    if (hi <= 0) {
      for (const auto& s : c.series)
        for (double v : s.values) hi = std::max(hi, v);
      hi = nice_ceiling(hi);
    }
    for (int t = 0; t <= 5; ++t) ticks.push_back(hi * t / 5);
  }
  const auto y_of = [&](double v) {
    return top + plot_h - (hi > lo ? std::clamp((v - lo) / (hi - lo), 0.0, 1.0) * plot_h : 0);
  };
  const double y_zero = y_of(0);
  const double group_w = G ? plot_w / static_cast<double>(G) : plot_w;
  const double bar_w = std::min(48.0, group_w * 0.8 / static_cast<double>(S));
  std::string o = fmt::format(
      "<svg class=\"chart\" data-chart=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" "
      "xmlns=\"http://www.w3.org/2000/svg\">\n<title>{}</title>\n",
      html_escape(c.id), W, H, html_escape(c.title), html_escape(c.title));
  o += legend;
  o += "<g class=\"axis\">";
  for (double v : ticks) {
    const double y = y_of(v);
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
      const BarSeries& series = c.series[s];
      const double v = series.values.at(g);
      // Unsigned: from the axis bottom up. Signed: from the zero line up or down.
      const double y_end = y_of(c.signed_axis ? v : std::max(v, 0.0));
      const double y = std::min(y_end, y_zero), h = std::abs(y_zero - y_end);
      const double x = x0 + bar_w * static_cast<double>(s), xc = x + (bar_w - 2) / 2;
      const std::string text = c.value_text ? c.value_text(v) : fmt::format("{}", v);
      o += fmt::format("<rect class=\"bar\" data-series=\"{}\" data-value=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" "
                       "height=\"{}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                       html_escape(series.name), fmt::format("{}", v), num(x), num(y), num(bar_w - 2), num(h),
                       colours[c.series.size() > 1 ? s : g], html_escape(c.groups[g]), html_escape(series.name),
                       html_escape(text));
      double label_top = y, label_bottom = y + h;
      if (g < series.errors.size()) {
        // Whisker with caps; drawn in the text colour so it reads on any bar colour.
        const ErrorBar& e = series.errors[g];
        const double y_lo = y_of(e.low), y_hi = y_of(e.high), cap = std::min(5.0, (bar_w - 2) / 3);
        o += fmt::format("<path class=\"error-bar\" data-series=\"{}\" data-low=\"{}\" data-high=\"{}\" "
                         "d=\"M{} {}V{}M{} {}H{}M{} {}H{}\" stroke=\"#1d1d1f\" stroke-width=\"1.5\" fill=\"none\"/>",
                         html_escape(series.name), fmt::format("{}", e.low), fmt::format("{}", e.high), num(xc),
                         num(y_lo), num(y_hi), num(xc - cap), num(y_lo), num(xc + cap), num(xc - cap), num(y_hi),
                         num(xc + cap));
        label_top = std::min(label_top, y_hi);
        label_bottom = std::max(label_bottom, y_lo);
      }
      if (c.value_text && S <= 2) {
        const bool below = c.signed_axis && v < 0;
        o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"value\">{}</text>", num(xc),
                         num(below ? label_bottom + 14 : label_top - 4), html_escape(text));
      }
    }
    if (g < c.notes.size() && !c.notes[g].empty())
      o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"note\">{}</text>", num(gx + group_w / 2),
                       num(top - 20), html_escape(c.notes[g]));
    // Category label, slanted so long variant names fit.
    o += fmt::format("<text transform=\"translate({} {}) rotate(-20)\" text-anchor=\"end\" class=\"category\">{}</text>",
                     num(gx + group_w / 2 + 4), num(top + plot_h + 16), html_escape(c.groups[g]));
    o += "</g>\n";
  }
  if (c.signed_axis)
    o += fmt::format("<line class=\"zero-line\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#1d1d1f\" "
                     "stroke-width=\"1.5\"/>\n",
                     num(left), num(y_zero), num(W - right), num(y_zero));
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
