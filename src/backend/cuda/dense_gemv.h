#pragma once
// Dense 16-bit products of a few activation rows (decode steps) with
// GPT-2's Conv1D weight layout [in, out]: y = epi(x · W + bias). cuBLASLt
// spent 6-7 us per such call at one row on an H100, plus a split-K
// reduction kernel for some shapes (device run 10, ncu), against ~1 us of
// weight traffic: a launch-and-latency cost, not a bandwidth one. This
// kernel reads W once with 16-byte loads (two threads per 16 output
// columns, 128 slices of k per block), sums in fp32 and reduces the slices
// in a fixed order (deterministic), with bias, GELU or the residual add
// fused as the other linear paths do.
#include <driver_types.h>

#include "backend/linear_args.h"

namespace gpt2q::cuda {

inline constexpr int64_t kDenseGemvMaxRows = 8;

// True when dense_gemv handles `a`: 16-bit x and W of the same dtype, W
// [in, out] (not w_out_in), rows 1..8, out % 8 == 0, 16-byte aligned W,
// no accumulate together with an activation.
bool dense_gemv_supports(const backend::LinearArgs& a);
// No allocation, no host synchronisation: capturable.
void dense_gemv(const backend::LinearArgs& a, cudaStream_t stream);

}  // namespace gpt2q::cuda
