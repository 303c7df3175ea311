#pragma once
// Attention of 1..4 new queries per sequence against a KV cache, reading the
// cached count from device memory (decode_attention.cu has the layout and
// the measurements). F16 / BF16, head_dim 32, 64 or 128; other cases take
// the generic kernel (attention.cu).
#include <driver_types.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace gpt2q::cuda {

bool decode_attention_supported(DType dtype, int64_t head_dim, int64_t q_len);
// Bytes of the split-K scratch for a cache of `capacity` positions (any
// q_len up to 4). Its first bytes are counters that must be zero before the
// first call (allocate it zero-filled); every call leaves them zero.
size_t decode_attention_scratch_bytes(int64_t batch, int64_t n_head, int64_t head_dim, int64_t capacity);
// The new keys and values of qkv [batch, q_len, 3C] into the caches at
// [*past, *past + q_len).
void decode_store_kv(const void* qkv, DType dtype, void* cache_k, void* cache_v, const int32_t* past, int64_t batch,
                     int64_t q_len, int64_t n_head, int64_t head_dim, int64_t capacity, cudaStream_t stream);
// out [batch, q_len, C] for the queries of qkv against keys [0, *past + q_len).
void decode_attention(const void* qkv, const void* cache_k, const void* cache_v, const uint8_t* key_valid,
                      const int32_t* past, void* out, float* scratch, DType dtype, int64_t batch, int64_t n_head,
                      int64_t head_dim, int64_t q_len, int64_t capacity, float scale, cudaStream_t stream);

}  // namespace gpt2q::cuda
