#pragma once
// Helpers of the CUDA backend that are not ops of their own.
#include <driver_types.h>

#include <cstdint>

namespace gpt2q::cuda {

// out[r, c] = row[c] for r < rows.
void broadcast_rows(const float* row, int64_t rows, int64_t cols, float* out, cudaStream_t stream);
// out[i] = value for i < n.
void fill(float* out, int64_t n, float value, cudaStream_t stream);

}  // namespace gpt2q::cuda
