#include "backend/cpu/grad_norm_kernels.h"

#include <vector>

namespace gpt2q::cpu {

backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count, double max_norm) {
  std::vector<double> sq(static_cast<size_t>(count), 0.0);
  // One segment per thread at a time: a segment's sum keeps element order
  // (the reference's), whichever thread adds it.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p = 0; p < count; ++p) {
    const float* g = flat + segments[p].offset;
    double s = 0;
    for (int64_t i = 0; i < segments[p].numel; ++i) s += static_cast<double>(g[i]) * g[i];
    sq[static_cast<size_t>(p)] = s;
  }
  const backend::GradClip c = backend::finish_grad_clip(sq.data(), count, max_norm);
  if (max_norm > 0) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t p = 0; p < count; ++p) {
      float* g = flat + segments[p].offset;
      for (int64_t i = 0; i < segments[p].numel; ++i) g[i] *= c.coef;
    }
  }
  return c;
}

namespace reference {

backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count, double max_norm) {
  std::vector<double> sq;
  for (int64_t p = 0; p < count; ++p) {
    double s = 0;
    for (int64_t i = 0; i < segments[p].numel; ++i) {
      const double g = flat[segments[p].offset + i];
      s += g * g;
    }
    sq.push_back(s);
  }
  const backend::GradClip c = backend::finish_grad_clip(sq.data(), count, max_norm);
  if (max_norm > 0)
    for (int64_t p = 0; p < count; ++p)
      for (int64_t i = 0; i < segments[p].numel; ++i) flat[segments[p].offset + i] *= c.coef;
  return c;
}

}  // namespace reference

}  // namespace gpt2q::cpu
