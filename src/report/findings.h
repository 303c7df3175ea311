#pragma once
// The report's key findings and recommendations, computed from the measured
// numbers (never fixed prose): which variant is best at what, how each one
// differs from the baseline, whether accuracy differences are within noise
// (McNemar's exact test on the paired predictions, p >= 0.05, and the 95%
// Wilson intervals), which variants are dominated, and what that implies.
#include "report/compare_results.h"

namespace gpt2q::report {

// Needs compute_comparisons() first; fills r.findings and r.recommendations.
void compute_findings(CompareResults& r);

// Significance level of the McNemar test used for "within noise".
inline constexpr double kNoiseAlpha = 0.05;

// A is at least as good as B in memory, latency and quality, and better in
// one (quality: accuracy, or lower perplexity for LM runs).
bool dominates(const CompareResults& r, size_t a, size_t b);

}  // namespace gpt2q::report
