// Attention of a few new queries (decoding) against a KV cache, on the
// GPU: split-K flash-decoding, moved from the dev/cuda harness
// (attention_decode.cu, candidate "split64-last") where it was validated
// against a double-precision reference (and replayed in a CUDA graph across
// partition borders) under memcheck, and timed on an H200: 9.6 us per layer
// at batch 1 with 1023 cached positions, 5 us with 50 (docs/cuda.md).
//
// Layout: cache_k / cache_v [B, n_head, capacity, hd]; q from the qkv rows
// [B, q_len, 3C]; out [B, q_len, C]; key_valid U8 [B, capacity] (1 =
// attend) or null. The cached count `past` lives in DEVICE memory (I32), so
// one captured CUDA graph serves every decode step: store_kv writes the new
// k/v at [past, past+q_len) and the attention reads past itself. Query i
// sits at position past+i and sees keys j <= past+i with key_valid[b][j] !=
// 0; a query that sees no key averages the values of all past+q_len keys
// (HF's eager path). Softmax and accumulation in fp32.
#include "backend/cuda/decode_attention.h"

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mma.cuh"

namespace gpt2q::cuda {

namespace {

constexpr int kMaxQ = 4, kThreads = 128, kMinChunk = 32;

// ---- scratch ---------------------------------------------------------------
// [counters: int per (b, h), padded to 16 bytes][ml: float2 per (b, h, split,
// i)][o: float[hd] per (b, h, split, i)]. The counters must be zero before
// the first call (cudaMemset once after allocating); the fused kernels leave
// them zero. The partials need no initialisation: only live splits' are read.
struct Partials {
  int* counters;
  float* ml;
  float* o;
};
__host__ __device__ inline Partials partials(float* scratch, int batch, int n_head, int q_len, int n_splits) {
  const int64_t bh = static_cast<int64_t>(batch) * n_head, cnt = (bh + 3) / 4 * 4;
  float* ml = scratch + cnt;
  return {reinterpret_cast<int*>(scratch), ml, ml + bh * n_splits * q_len * 2};
}
// Bytes of scratch any candidate needs (the smallest partition has the most splits).
size_t decode_scratch_bytes(int batch, int n_head, int head_dim, int q_len, int capacity) {
  const int64_t bh = static_cast<int64_t>(batch) * n_head, ns = (capacity + kMinChunk - 1) / kMinChunk;
  return sizeof(float) * ((bh + 3) / 4 * 4 + bh * ns * q_len * (2 + static_cast<int64_t>(head_dim)));
}

// ---- store_kv ----------------------------------------------------------------
// 16-byte copies of k and v of every new row into the cache at past + i.
// Positions >= capacity are dropped (memory safety; the host sizes the cache).
template <typename T>
__global__ void store_kv_kernel(const T* __restrict__ qkv, T* __restrict__ cache_k, T* __restrict__ cache_v,
                                const int32_t* __restrict__ past_ptr, int batch, int q_len, int n_head, int hd,
                                int capacity) {
  const int past = *past_ptr, chunks = hd / 8, C = n_head * hd;
  const int64_t n = static_cast<int64_t>(batch) * q_len * n_head * chunks;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(idx % chunks);
    int64_t r = idx / chunks;
    const int h = static_cast<int>(r % n_head);
    r /= n_head;
    const int i = static_cast<int>(r % q_len), b = static_cast<int>(r / q_len), pos = past + i;
    if (pos >= capacity) continue;
    const T* row = qkv + (static_cast<int64_t>(b) * q_len + i) * 3 * C + h * hd + c * 8;
    const int64_t dst = ((static_cast<int64_t>(b) * n_head + h) * capacity + pos) * hd + c * 8;
    *reinterpret_cast<uint4*>(cache_k + dst) = *reinterpret_cast<const uint4*>(row + C);
    *reinterpret_cast<uint4*>(cache_v + dst) = *reinterpret_cast<const uint4*>(row + 2 * C);
  }
}
template <typename T>
void store_kv_device_past(const T* qkv, T* cache_k, T* cache_v, const int32_t* past, int batch, int q_len, int n_head, int hd,
              int capacity, cudaStream_t stream) {
  if (hd % 8) fail_bad_value("store_kv: head_dim not a multiple of 8", hd);
  const int64_t n = static_cast<int64_t>(batch) * q_len * n_head * (hd / 8);
  if (n <= 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 1024));
  store_kv_kernel<T><<<blocks, 256, 0, stream>>>(qkv, cache_k, cache_v, past, batch, q_len, n_head, hd, capacity);
  check_launch("store_kv (device past) kernel");
}

// ============================================================================
// Split-K (flash-decoding; the harness's candidate 2, "split64-last"). Block (split, head, sequence),
// 128 threads, keys [split·CHUNK, (split+1)·CHUNK) ∩ [0, kv_len).
// A key row is HD/8 16-byte pieces; kLanes = HD/8 consecutive lanes share a
// key, so one pass covers kGroups = 128/kLanes keys, and every K and V load
// of the block is issued up front (registers), before q: one memory latency.
//   1. scores: each lane dots its 8 dims with q (fp32, pre-scaled by
//      scale·log2e), shuffle-reduced over the kLanes lanes -> p_s.
//   2. warp i (< q_len) takes the max and the exp2 sum over the chunk.
//   3. P·V: each lane accumulates its 8 dims over its keys, reduced over
//      the key groups (shuffles, then 4 warps through shared memory).
// Partial (m, l, o) go to scratch; the combine rescales by exp2(m_s - M).
template <int HD, int CHUNK>
struct DecCfg {
  static constexpr int kLanes = HD / 8, kGroups = kThreads / kLanes, kPasses = CHUNK / kGroups;
  static_assert(HD % 8 == 0 && 32 % kLanes == 0 && CHUNK % kGroups == 0 && kPasses >= 1, "shape");
};

// Combine the live splits of (b, h) into out; threads stride over (i, d).
template <typename T, int HD>
__device__ void combine_partials(const Partials& P, const T* __restrict__ cache_v, T* __restrict__ out, int b, int h,
                                 int n_head, int q_len, int n_splits, int n_live, int kv_len, int64_t row0) {
  const int C = n_head * HD;
  for (int idx = threadIdx.x; idx < q_len * HD; idx += blockDim.x) {
    const int i = idx / HD, d = idx % HD;
    const int64_t base = (static_cast<int64_t>(b) * n_head + h) * n_splits * q_len + i;  // + s·q_len
    float M = -INFINITY;
    // __ldcg: L2 only. In the fused kernels the partials were written by
    // other blocks of this launch; L1 is not coherent with them.
    for (int s = 0; s < n_live; ++s) M = fmaxf(M, __ldcg(P.ml + (base + s * q_len) * 2));
    float res;
    if (M == -INFINITY) {  // no visible key in any split
      float acc = 0.f;
      for (int j = 0; j < kv_len; ++j) acc += Elem<T>::to_float(cache_v[(row0 + j) * HD + d]);
      res = acc / static_cast<float>(kv_len);
    } else {
      float L = 0.f, acc = 0.f;
      for (int s = 0; s < n_live; ++s) {
        const float m = __ldcg(P.ml + (base + s * q_len) * 2);
        if (m == -INFINITY) continue;  // a split with nothing visible: l = 0, o = 0
        const float w = exp2f(m - M);
        L += w * __ldcg(P.ml + (base + s * q_len) * 2 + 1);
        acc += w * __ldcg(P.o + (base + s * q_len) * HD + d);
      }
      res = acc / L;  // L >= 1: the split holding M contributes exp2(0)·(its l >= 1)
    }
    out[(static_cast<int64_t>(b) * q_len + i) * C + h * HD + d] = Elem<T>::from_float(res);
  }
}

template <typename T, int HD, int CHUNK, bool FUSED>
__global__ void __launch_bounds__(kThreads)
    decode_split_kernel(const T* __restrict__ qkv, const T* __restrict__ cache_k, const T* __restrict__ cache_v,
                        const uint8_t* __restrict__ key_valid, const int32_t* __restrict__ past_ptr,
                        T* __restrict__ out, float* __restrict__ scratch, int n_head, int q_len, int capacity,
                        int n_splits, float scale_log2) {
  using Cfg = DecCfg<HD, CHUNK>;
  constexpr int kLanes = Cfg::kLanes, kGroups = Cfg::kGroups, kPasses = Cfg::kPasses;
  __shared__ float q_s[kMaxQ][HD];
  __shared__ float p_s[kMaxQ][CHUNK];
  __shared__ float ml_s[kMaxQ][2];
  __shared__ float red_s[kThreads / 32][kMaxQ][HD];
  __shared__ int last_s;

  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int past = *past_ptr, kv_len = min(past + q_len, capacity);
  const int n_live = min((kv_len + CHUNK - 1) / CHUNK, n_splits);
  if (split >= n_live) return;  // whole block, before any barrier; never takes a ticket
  const int k0 = split * CHUNK, C = n_head * HD;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, part = tid % kLanes, grp = tid / kLanes;
  const int64_t row0 = (static_cast<int64_t>(b) * n_head + h) * capacity;
  const uint8_t* mask = key_valid ? key_valid + static_cast<int64_t>(b) * capacity : nullptr;

  uint4 kr[kPasses], vr[kPasses];
  bool vis[kPasses];  // in range and not masked (causality per query below)
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int j = k0 + p * kGroups + grp;
    const bool in = j < kv_len;
    const int64_t at = (row0 + (in ? j : 0)) * HD + part * 8;
    kr[p] = in ? __ldg(reinterpret_cast<const uint4*>(cache_k + at)) : make_uint4(0, 0, 0, 0);
    vr[p] = in ? __ldg(reinterpret_cast<const uint4*>(cache_v + at)) : make_uint4(0, 0, 0, 0);
    vis[p] = in && (!mask || mask[j] != 0);
  }
  for (int idx = tid; idx < q_len * HD; idx += kThreads) {
    const int i = idx / HD, d = idx % HD;
    q_s[i][d] = Elem<T>::to_float(qkv[(static_cast<int64_t>(b) * q_len + i) * 3 * C + h * HD + d]) * scale_log2;
  }
  __syncthreads();

  // 1. scores
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int jj = p * kGroups + grp, j = k0 + jj;
    float kf[8];
    unpack8<T>(kr[p], kf);
#pragma unroll
    for (int i = 0; i < kMaxQ; ++i) {
      if (i >= q_len) break;  // uniform: the shuffles below see every lane
      float s = 0.f;
#pragma unroll
      for (int e = 0; e < 8; ++e) s += q_s[i][part * 8 + e] * kf[e];
#pragma unroll
      for (int off = kLanes / 2; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
      if (part == 0) p_s[i][jj] = (vis[p] && j <= past + i) ? s : -INFINITY;
    }
  }
  __syncthreads();

  // 2. max and sum per query over the chunk
  if (warp < q_len) {
    const int i = warp;
    float mx = -INFINITY;
    for (int jj = lane; jj < CHUNK; jj += 32) mx = fmaxf(mx, p_s[i][jj]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    float sum = 0.f;
    for (int jj = lane; jj < CHUNK; jj += 32) {
      const float e = mx == -INFINITY ? 0.f : exp2f(p_s[i][jj] - mx);
      p_s[i][jj] = e;
      sum += e;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) ml_s[i][0] = mx, ml_s[i][1] = sum;
  }
  __syncthreads();

  // 3. P·V (keys out of range have v = 0 and p = 0; masked ones p = 0)
  float acc[kMaxQ][8] = {};
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int jj = p * kGroups + grp;
    float vf[8];
    unpack8<T>(vr[p], vf);
#pragma unroll
    for (int i = 0; i < kMaxQ; ++i) {
      if (i >= q_len) break;
      const float w = p_s[i][jj];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[i][e] += w * vf[e];
    }
  }
#pragma unroll
  for (int i = 0; i < kMaxQ; ++i) {
    if (i >= q_len) break;
#pragma unroll
    for (int e = 0; e < 8; ++e)
#pragma unroll
      for (int off = kLanes; off < 32; off *= 2) acc[i][e] += __shfl_xor_sync(0xffffffffu, acc[i][e], off);
    if (lane < kLanes)  // the first key group of the warp: part == lane
#pragma unroll
      for (int e = 0; e < 8; ++e) red_s[warp][i][part * 8 + e] = acc[i][e];
  }
  __syncthreads();

  const Partials P = partials(scratch, gridDim.z, n_head, q_len, n_splits);
  const int64_t pbase = ((static_cast<int64_t>(b) * n_head + h) * n_splits + split) * q_len;
  for (int idx = tid; idx < q_len * HD; idx += kThreads) {
    const int i = idx / HD, d = idx % HD;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) v += red_s[w][i][d];
    P.o[(pbase + i) * HD + d] = v;
  }
  if (tid < q_len) P.ml[(pbase + tid) * 2] = ml_s[tid][0], P.ml[(pbase + tid) * 2 + 1] = ml_s[tid][1];
  if constexpr (FUSED) {
    // Threadfence-reduction pattern: every writer fences, then one ticket per
    // block; the block drawing the last ticket sees all partials.
    __threadfence();
    __syncthreads();
    if (tid == 0) last_s = atomicAdd(P.counters + b * n_head + h, 1) == n_live - 1;
    __syncthreads();
    if (!last_s) return;
    __threadfence();
    combine_partials<T, HD>(P, cache_v, out, b, h, n_head, q_len, n_splits, n_live, kv_len, row0);
    if (tid == 0) P.counters[b * n_head + h] = 0;  // every live block has taken its ticket: reset for the next call
  }
}

template <typename T, int HD>
void launch(const T* qkv, const T* ck, const T* cv, const uint8_t* kvalid, const int32_t* past, T* out,
            float* scratch, int batch, int n_head, int q_len, int capacity, float scale, cudaStream_t st) {
  constexpr int kChunk = 64;
  const int n_splits = (capacity + kChunk - 1) / kChunk;
  decode_split_kernel<T, HD, kChunk, true><<<dim3(n_splits, n_head, batch), kThreads, 0, st>>>(
      qkv, ck, cv, kvalid, past, out, scratch, n_head, q_len, capacity, n_splits, scale * kLog2e);
  check_launch("decode attention kernel");
}

template <typename T>
void dispatch(const void* qkv, const void* ck, const void* cv, const uint8_t* kvalid, const int32_t* past, void* out,
              float* scratch, int batch, int n_head, int head_dim, int q_len, int capacity, float scale,
              cudaStream_t st) {
  const T* q = static_cast<const T*>(qkv);
  const T* k = static_cast<const T*>(ck);
  const T* v = static_cast<const T*>(cv);
  T* o = static_cast<T*>(out);
  switch (head_dim) {
    case 32: launch<T, 32>(q, k, v, kvalid, past, o, scratch, batch, n_head, q_len, capacity, scale, st); break;
    case 64: launch<T, 64>(q, k, v, kvalid, past, o, scratch, batch, n_head, q_len, capacity, scale, st); break;
    case 128: launch<T, 128>(q, k, v, kvalid, past, o, scratch, batch, n_head, q_len, capacity, scale, st); break;
    default: fail_bad_value("decode attention: head_dim not instantiated (32, 64, 128)", head_dim);
  }
}

}  // namespace

bool decode_attention_supported(DType dtype, int64_t head_dim, int64_t q_len) {
  return (dtype == DType::F16 || dtype == DType::BF16) && (head_dim == 32 || head_dim == 64 || head_dim == 128) &&
         q_len >= 1 && q_len <= kMaxQ;
}

size_t decode_attention_scratch_bytes(int64_t batch, int64_t n_head, int64_t head_dim, int64_t capacity) {
  return decode_scratch_bytes(static_cast<int>(batch), static_cast<int>(n_head), static_cast<int>(head_dim), kMaxQ,
                              static_cast<int>(capacity));
}

void decode_store_kv(const void* qkv, DType dtype, void* cache_k, void* cache_v, const int32_t* past, int64_t batch,
                     int64_t q_len, int64_t n_head, int64_t head_dim, int64_t capacity, cudaStream_t stream) {
  if (dtype == DType::F16)
    store_kv_device_past<__half>(static_cast<const __half*>(qkv), static_cast<__half*>(cache_k),
                                 static_cast<__half*>(cache_v), past, static_cast<int>(batch), static_cast<int>(q_len),
                                 static_cast<int>(n_head), static_cast<int>(head_dim), static_cast<int>(capacity),
                                 stream);
  else if (dtype == DType::BF16)
    store_kv_device_past<__nv_bfloat16>(static_cast<const __nv_bfloat16*>(qkv), static_cast<__nv_bfloat16*>(cache_k),
                                        static_cast<__nv_bfloat16*>(cache_v), past, static_cast<int>(batch),
                                        static_cast<int>(q_len), static_cast<int>(n_head),
                                        static_cast<int>(head_dim), static_cast<int>(capacity), stream);
  else
    fail_bad_value("decode store_kv: unsupported dtype", static_cast<int64_t>(dtype));
}

void decode_attention(const void* qkv, const void* cache_k, const void* cache_v, const uint8_t* key_valid,
                      const int32_t* past, void* out, float* scratch, DType dtype, int64_t batch, int64_t n_head,
                      int64_t head_dim, int64_t q_len, int64_t capacity, float scale, cudaStream_t stream) {
  if (batch <= 0 || n_head <= 0) return;
  if (!decode_attention_supported(dtype, head_dim, q_len)) fail_bad_value("decode attention: unsupported case", q_len);
  if (batch > 65535 || n_head > 65535) fail_too_large("decode attention batch or heads", std::max(batch, n_head), 65535);
  const int b = static_cast<int>(batch), h = static_cast<int>(n_head), hd = static_cast<int>(head_dim),
            q = static_cast<int>(q_len), cap = static_cast<int>(capacity);
  if (dtype == DType::F16)
    dispatch<__half>(qkv, cache_k, cache_v, key_valid, past, out, scratch, b, h, hd, q, cap, scale, stream);
  else
    dispatch<__nv_bfloat16>(qkv, cache_k, cache_v, key_valid, past, out, scratch, b, h, hd, q, cap, scale, stream);
}

}  // namespace gpt2q::cuda
