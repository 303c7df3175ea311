#pragma once
// report.md: executive summary, efficiency / quality / per-class tables, key
// findings, recommendations, per-variant details and the setup (machine,
// threads, gpt2q version and commit, exact command). Every sentence comes
// from compute_findings() or the measured numbers.
#include <string>

#include "report/compare_results.h"

namespace gpt2q::report {

std::string report_markdown(const CompareResults& r);

}  // namespace gpt2q::report
