#pragma once
// How the reports print numbers, shared by findings, Markdown and HTML so
// that every file states the same figure the same way.
#include <cmath>
#include <cstddef>
#include <string>

#include <fmt/format.h>

namespace gpt2q::report {

inline std::string fmt_pct(double fraction, int decimals = 2) { return fmt::format("{:.{}f}%", 100 * fraction, decimals); }
// Signed percentage points: "+1.25 pp", "-0.50 pp".
inline std::string fmt_pp(double delta) { return fmt::format("{:+.2f} pp", 100 * delta); }
inline std::string fmt_mb(size_t bytes) { return fmt::format("{:.2f} MB", static_cast<double>(bytes) / 1e6); }
inline std::string fmt_mib(size_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / 1048576.0); }
inline std::string fmt_ratio(double r) { return fmt::format("{:.2f}×", r); }
inline std::string fmt_ms(double ms) { return ms >= 100 ? fmt::format("{:.1f}", ms) : fmt::format("{:.3f}", ms); }
inline std::string fmt_rate(double per_s) { return per_s >= 100 ? fmt::format("{:.0f}", per_s) : fmt::format("{:.1f}", per_s); }
inline std::string fmt_p(double p) { return p < 0.001 ? fmt::format("{:.1e}", p) : fmt::format("{:.3f}", p); }
inline std::string fmt_kl(double kl) { return fmt::format("{:.3g}", kl); }
inline std::string fmt_f(double v) { return fmt::format("{:.4f}", v); }

}  // namespace gpt2q::report
