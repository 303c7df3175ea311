#pragma once
// Causal self-attention over the sequences of a batch of rows on tensor
// cores (flash_attention.cu has the layout and the measurements). F16 / BF16
// only; head_dim 32, 64 or 128 (every GPT-2 size has 64); other cases take
// the generic kernel (attention.cu).
#include <driver_types.h>

#include <cstdint>

#include "core/dtype.h"

namespace gpt2q::cuda {

bool flash_attention_supported(DType dtype, int64_t head_dim);

// qkv [rows_total, 3·n_head·head_dim] -> out [rows_total, n_head·head_dim];
// seq_offset / seq_rows / seq_valid: I32 [batch] device arrays; max_rows >=
// every seq_rows[b] (sizes the grid). Queued on `stream`; no allocation, no
// synchronisation (the first call of a head_dim above 64 sets a kernel
// attribute, outside any graph capture).
void flash_attention(const void* qkv, void* out, DType dtype, const int32_t* seq_offset, const int32_t* seq_rows,
                     const int32_t* seq_valid, int64_t batch, int64_t max_rows, int64_t n_head, int64_t head_dim,
                     float scale, cudaStream_t stream);

}  // namespace gpt2q::cuda
