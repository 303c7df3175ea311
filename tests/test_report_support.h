#pragma once
// Synthetic compare results for the report tests: n samples of K classes,
// variants whose predictions differ from the labels where told, with given
// weight bytes and latencies. Logits put `margin` on the predicted class.
#include <algorithm>
#include <string>
#include <vector>

#include "report/compare_results.h"
#include "report/findings.h"

namespace gpt2q::report::test {

struct VariantPlan {
  std::string name;
  size_t weight_bytes = 0;
  double mean_ms = 1;
  std::vector<size_t> wrong;  // sample indices predicted wrongly ((label + 1) % K)
  float margin = 2.0f;
};

inline CompareResults synthetic_results(int64_t n, int64_t K, const std::vector<VariantPlan>& plans) {
  CompareResults r;
  r.run.model = "models/<tiny>";
  r.run.data = "data/test.csv";
  r.run.format = "agnews";
  r.run.samples = n;
  r.run.max_length = 64;
  r.run.batch_size = 8;
  r.run.gpt2q_version = "9.9.9";
  r.run.git_commit = "abc1234";
  r.run.date_utc = "2026-01-02 03:04:05 UTC";
  r.run.command = "gpt2q compare --model 'models/<tiny>' --data data/test.csv --out o";
  r.run.host = "testhost";
  r.run.cpu = "Test CPU @ 1 GHz";
  r.run.cpu_features = "avx2 fma";
  r.run.threads = 2;
  for (int64_t k = 0; k < K; ++k) r.run.class_names.push_back(k == 1 ? "Sci/Tech & <b>" : "class" + std::to_string(k));
  for (int64_t i = 0; i < n; ++i) r.run.labels.push_back(static_cast<int32_t>(i % K));
  for (const auto& p : plans) {
    VariantMeasurement m;
    m.name = p.name;
    m.description = p.name + " described";
    m.source = "quantized in memory";
    m.weight_bytes = p.weight_bytes;
    m.components = {{"wte", p.weight_bytes / 2}, {"blocks", p.weight_bytes - p.weight_bytes / 2}};
    m.latency.mean_ms = p.mean_ms;
    m.latency.p50_ms = p.mean_ms * 0.9;
    m.latency.p90_ms = p.mean_ms * 1.2;
    m.latency.p99_ms = p.mean_ms * 1.5;
    m.latency.samples = n;
    m.latency.batches = (n + 7) / 8;
    m.latency.total_s = p.mean_ms * static_cast<double>(n) / 1e3;
    m.latency.samples_per_s = 1e3 / p.mean_ms;
    m.num_labels = K;
    for (int64_t i = 0; i < n; ++i) {
      int32_t y = r.run.labels[i];
      bool wrong = std::find(p.wrong.begin(), p.wrong.end(), static_cast<size_t>(i)) != p.wrong.end();
      const int32_t pred = wrong ? static_cast<int32_t>((y + 1) % K) : y;
      m.predictions.push_back(pred);
      for (int64_t k = 0; k < K; ++k) m.logits.push_back(k == pred ? p.margin : 0.1f * static_cast<float>(k));
    }
    r.variants.push_back(m);
  }
  compute_comparisons(r);
  compute_findings(r);
  return r;
}

inline std::vector<size_t> first_n(size_t from, size_t count, size_t step = 1) {
  std::vector<size_t> v;
  for (size_t i = 0; i < count; ++i) v.push_back(from + i * step);
  return v;
}

// Occurrences of `part` in `s`.
inline size_t count_of(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + part.size())) ++n;
  return n;
}

// The text of the nth element <svg ... data-chart="ID" ...> ... </svg>; "" when absent.
inline std::string svg_element(const std::string& html, const std::string& id, size_t nth = 0) {
  size_t p = std::string::npos;
  for (size_t k = 0; k <= nth; ++k) {
    p = html.find("data-chart=\"" + id + "\"", p == std::string::npos ? 0 : p + 1);
    if (p == std::string::npos) return "";
  }
  const size_t b = html.rfind("<svg", p), e = html.find("</svg>", p);
  if (b == std::string::npos || e == std::string::npos) return "";
  return html.substr(b, e + 6 - b);
}

// The text of <table data-table="ID"> ... </table>; "" when absent.
inline std::string table_element(const std::string& html, const std::string& id) {
  const size_t b = html.find("data-table=\"" + id + "\"");
  if (b == std::string::npos) return "";
  return html.substr(b, html.find("</table>", b) - b);
}

}  // namespace gpt2q::report::test
