#pragma once
// Dense 16-bit products of a few activation rows (batch-1 classification,
// decode steps) with an [out, in] weight (nn.Linear's layout, as the CUDA
// dense layers and the tied LM head hold theirs): y = epi(x · Wᵀ + bias).
// cuBLASLt spent 6-9 us per such call on an H100 (plus a split-K reduction
// kernel for some shapes; device runs 3 and 4, ncu) against ~1 us of weight
// traffic: a launch-and-latency cost, not a bandwidth one. Here one warp
// owns R output rows and reads each one's weights as contiguous 16-byte
// chunks, every load of a step issued before the math; fp32 sums, reduced
// in a fixed order (deterministic), with bias, GELU or the residual add
// fused as the other linear paths do (linear_epilogue.cuh).
#include <driver_types.h>

#include "backend/linear_args.h"

namespace gpt2q::cuda {

inline constexpr int64_t kDenseGemvMaxRows = 8;

// True when dense_gemv handles `a`: 16-bit x and W of the same dtype, W
// [out, in] (w_out_in), rows 1..8, in % 8 == 0, x and W 16-byte aligned,
// no accumulate together with an activation.
bool dense_gemv_supports(const backend::LinearArgs& a);
// No allocation, no host synchronisation: capturable.
void dense_gemv(const backend::LinearArgs& a, cudaStream_t stream);

}  // namespace gpt2q::cuda
