#pragma once
// Gradient clipping over one flat fp32 buffer, as plain data shared by the
// CPU and CUDA kernels. The buffer holds every parameter's gradient; a
// segment is one parameter's range of it. torch.nn.utils.clip_grad_norm_'s
// arithmetic, which train/grad_clip.h writes out as the scalar reference:
//   norm_p = f32(sqrt(Σ g² over segment p))    (a double sum)
//   total  = f32(sqrt(Σ_p norm_p²))            (in double, segments in order)
//   coef   = min(f32(1 / (total + 1e-6)) · f32(max_norm), 1)
//   g     *= coef                              (only when max_norm > 0)
#include <cmath>
#include <cstdint>

namespace gpt2q::backend {

struct GradSegment {
  int64_t offset = 0;  // first element in the flat buffer
  int64_t numel = 0;
};

// What a clip returns: the total norm before clipping and the factor the
// gradients were multiplied by (1 when max_norm <= 0 or the norm is small).
struct GradClip {
  float total_norm = 0;
  float coef = 1;
};

// The finishing step every device shares (host and device code): the
// per-segment sums of squares, in segment order, to the total norm and the
// clip factor.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline GradClip finish_grad_clip(const double* segment_sq, int64_t segments, double max_norm) {
  double total_sq = 0.0;
  for (int64_t p = 0; p < segments; ++p) {
    const double norm = static_cast<float>(sqrt(segment_sq[p]));
    total_sq += norm * norm;
  }
  GradClip c;
  c.total_norm = static_cast<float>(sqrt(total_sq));
  // Python's `max_norm / tensor` is tensor.reciprocal() * max_norm.
  if (max_norm > 0) {
    const float coef = (1.0f / (c.total_norm + 1e-6f)) * static_cast<float>(max_norm);
    c.coef = 1.0f < coef ? 1.0f : coef;  // std::min(coef, 1.0f), NaN included
  }
  return c;
}

}  // namespace gpt2q::backend
