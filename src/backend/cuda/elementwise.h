#pragma once
// Helpers of the CUDA backend that are not ops of their own.
#include <driver_types.h>

#include <cstdint>

#include "core/dtype.h"

namespace gpt2q::cuda {

// out[r, c] = row[c] for r < rows.
void broadcast_rows(const float* row, int64_t rows, int64_t cols, float* out, cudaStream_t stream);
// out[i] = value for i < n.
void fill(float* out, int64_t n, float value, cudaStream_t stream);
// out[i, :] = table[idx[i], :] (or += with accumulate) as fp32, table F32,
// F16 or BF16 [*, cols]; idx checked by the caller.
void gather_dense_rows(const void* table, DType dtype, int64_t cols, const int64_t* idx, int64_t n, float* out,
                       bool accumulate, cudaStream_t stream);

}  // namespace gpt2q::cuda
