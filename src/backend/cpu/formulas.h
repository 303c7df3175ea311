#pragma once
// Formulas written once for a forward kernel and its backward: the per-row
// LayerNorm statistics (the backward must recompute exactly what the forward
// normalised with), and for the scalar references those statistics plainly
// and GELU's parts.
#include <cmath>
#include <cstdint>

namespace gpt2q::cpu {

struct LayerNormStats {
  double mean, rstd;  // rstd = 1 / sqrt(var + eps)
};

// Two passes: the mean first, then squared deviations from it, which avoids
// the cancellation of E[x²] - E[x]² on rows with a large mean. Sums in
// double: a float running sum of ~1000 values loses the low bits of the mean
// when the values share a large offset (still vectorised).
inline LayerNormStats layer_norm_stats(const float* xr, int64_t cols, float eps) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < cols; ++c) sum += xr[c];
  const double mean = sum / static_cast<double>(cols);
  double sq = 0.0;
#pragma omp simd reduction(+ : sq)
  for (int64_t c = 0; c < cols; ++c) {
    double d = xr[c] - mean;
    sq += d * d;
  }
  return {mean, 1.0 / std::sqrt(sq / static_cast<double>(cols) + static_cast<double>(eps))};
}

namespace reference {

// The same statistics as straightforward sequential loops.
inline LayerNormStats layer_norm_stats(const float* xr, int64_t cols, float eps) {
  double mean = 0.0;
  for (int64_t c = 0; c < cols; ++c) mean += xr[c];
  mean /= static_cast<double>(cols);
  double var = 0.0;
  for (int64_t c = 0; c < cols; ++c) var += (xr[c] - mean) * (xr[c] - mean);
  var /= static_cast<double>(cols);
  return {mean, 1.0 / std::sqrt(var + static_cast<double>(eps))};
}

// GELU's two forms in double, shared by the forward and backward references:
// tanh(sqrt(2/π)·(x + 0.044715·x³)) of the tanh form, and Φ(x) of the erf form.
inline double gelu_new_k() { return std::sqrt(2.0 / M_PI); }
inline double gelu_new_tanh(double v) { return std::tanh(gelu_new_k() * (v + 0.044715 * v * v * v)); }
inline double normal_cdf(double v) { return 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))); }

}  // namespace reference

}  // namespace gpt2q::cpu
