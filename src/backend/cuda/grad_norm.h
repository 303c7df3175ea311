#pragma once
// Gradient clipping over a flat fp32 buffer on CUDA
// (backend/grad_norm_args.h has the arithmetic). Each segment is cut into
// chunks of a fixed size; a block sums a chunk's squares in double, a second
// pass adds each segment's chunks in order, and one thread finishes as the
// CPU does (finish_grad_clip). The sums' order depends on the segments only,
// never on timing: the same gradients give the same norm on every run. It
// differs from the CPU's element-order sums only in double rounding, far
// below the float the norm is rounded to.
#include <driver_types.h>

#include <cstdint>

#include "backend/grad_norm_args.h"

namespace gpt2q::cuda {

// Clips in place (when max_norm > 0) and returns the norm and the factor:
// the one value that comes back to the host, so this waits for the stream.
// `segments` is a host array (uploaded with the work).
backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count, double max_norm,
                                 cudaStream_t stream);

}  // namespace gpt2q::cuda
