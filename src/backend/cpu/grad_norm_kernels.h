#pragma once
// Gradient clipping over a flat buffer on the CPU (backend/grad_norm_args.h):
// each segment's squares summed in double in element order, segments in
// parallel, so the result equals train::clip_grad_norm over the same
// gradients held as separate tensors, bit for bit.
#include <cstdint>

#include "backend/grad_norm_args.h"

namespace gpt2q::cpu {

backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count, double max_norm);

namespace reference {
// One segment after the other on the calling thread.
backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count, double max_norm);
}  // namespace reference

}  // namespace gpt2q::cpu
