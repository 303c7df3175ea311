#pragma once
// Helpers of the CUDA backend that are not ops of their own (used by the
// GEMM wrappers in gemm.cpp).
#include <cstdint>

namespace gpt2q::cuda {

// out[r, c] = row[c] for r < rows.
void broadcast_rows(const float* row, int64_t rows, int64_t cols, float* out);
// out[i] = value for i < n.
void fill(float* out, int64_t n, float value);

}  // namespace gpt2q::cuda
