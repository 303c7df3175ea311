#pragma once
// report.html: one self-contained page (inline CSS, inline SVG charts, no
// network) with what report.md says plus charts: grouped metric bars
// (data-chart="metrics"), memory with compression ratios ("memory"),
// latency ("latency") and throughput ("throughput"), a confusion-matrix
// heatmap per variant ("confusion", data-variant=NAME), per-class F1
// ("per-class-f1"); for LM runs perplexity ("perplexity") instead of the
// classification charts. Tables carry data-table=ID and one row per variant
// with data-variant=NAME. Print CSS keeps charts and tables whole on a page.
// A three-line inline script only marks each chart data-rendered="yes" once
// the browser has laid it out with a non-zero size (used by the browser test);
// the page reads the same without it.
#include <string>

#include "report/compare_results.h"

namespace gpt2q::report {

std::string report_html(const CompareResults& r);

}  // namespace gpt2q::report
