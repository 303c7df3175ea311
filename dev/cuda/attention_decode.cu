// Decode attention: q_len (1..4) new queries per sequence against a KV
// cache. Candidates, a double-precision CPU reference, a validator and a
// benchmark.
//
// Layout: cache_k / cache_v [B, n_head, capacity, hd]; q from the qkv rows
// [B, q_len, 3C] (q | k | v, head h at columns [h·hd, (h+1)·hd)); out
// [B, q_len, C]; key_valid U8 [B, capacity] (1 = attend) or null. The cached
// count `past` lives in DEVICE memory (int32), so one captured CUDA graph
// serves every decode step: store_kv writes the new k/v at [past, past+q_len)
// and the attention reads past itself. Query i sits at position past+i and
// sees keys j <= past+i with key_valid[b][j] != 0; a query that sees no key
// averages the values of all past+q_len keys (HF's eager path, as the
// product's AttentionArgs documents). Softmax and accumulation in fp32.
//
// Candidates (grid sized from the host's capacity; blocks past the live
// range, read from device memory, exit at once):
//   0 baseline     one warp per (query, head, sequence), all keys in order.
//   1 split64+comb flash-decoding: 64-key partitions, one block each, partial
//                  (max, sum, unnormalised out) to scratch, then a combine
//                  kernel (two launches).
//   2 split64 last the same, combined by the block that finishes last
//                  (atomic ticket per (b, h)): one launch.
//   3 split32 last 32-key partitions: twice the blocks for short caches.
// Build: dev/cuda/build.sh. Run: bin/attention_decode [--validate-only].
#include "attention_util.cuh"

using namespace dev;

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
void store_kv(const T* qkv, T* cache_k, T* cache_v, const int32_t* past, int batch, int q_len, int n_head, int hd,
              int capacity, cudaStream_t stream) {
  if (hd % 8) {
    std::fprintf(stderr, "store_kv: head_dim %d not a multiple of 8\n", hd);
    std::exit(2);
  }
  const int64_t n = static_cast<int64_t>(batch) * q_len * n_head * (hd / 8);
  if (n <= 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 1024));
  store_kv_kernel<T><<<blocks, 256, 0, stream>>>(qkv, cache_k, cache_v, past, batch, q_len, n_head, hd, capacity);
}

// ============================================================================
// Candidate 0: one warp per query; lane l holds dims [l·HD/32, (l+1)·HD/32).
template <typename T, int HD>
__global__ void __launch_bounds__(32)
    decode_baseline_kernel(const T* __restrict__ qkv, const T* __restrict__ cache_k, const T* __restrict__ cache_v,
                           const uint8_t* __restrict__ key_valid, const int32_t* __restrict__ past_ptr,
                           T* __restrict__ out, int n_head, int q_len, int capacity, float scale_log2) {
  constexpr int kPer = HD / 32;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, lane = threadIdx.x, C = n_head * HD;
  const int past = *past_ptr, kv_len = min(past + q_len, capacity), end = min(past + i + 1, kv_len);
  const int64_t row0 = (static_cast<int64_t>(b) * n_head + h) * capacity;
  const uint8_t* mask = key_valid ? key_valid + static_cast<int64_t>(b) * capacity : nullptr;
  const T* qr = qkv + (static_cast<int64_t>(b) * q_len + i) * 3 * C + h * HD + lane * kPer;
  float q[kPer], acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    q[e] = Elem<T>::to_float(qr[e]) * scale_log2;
    acc[e] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = 0; j < end; ++j) {
    if (mask && !mask[j]) continue;  // uniform across the warp
    const T* kr = cache_k + (row0 + j) * HD + lane * kPer;
    const T* vr = cache_v + (row0 + j) * HD + lane * kPer;
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < kPer; ++e) s += q[e] * Elem<T>::to_float(kr[e]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    const float m_new = fmaxf(m, s), corr = exp2f(m - m_new), p = exp2f(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] = acc[e] * corr + p * Elem<T>::to_float(vr[e]);
    m = m_new;
  }
  if (l == 0.f) {  // no visible key: the mean of all kv_len values
    for (int j = 0; j < kv_len; ++j)
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[e] += Elem<T>::to_float(cache_v[(row0 + j) * HD + lane * kPer + e]);
    l = static_cast<float>(kv_len);
  }
  T* o = out + (static_cast<int64_t>(b) * q_len + i) * C + h * HD + lane * kPer;
#pragma unroll
  for (int e = 0; e < kPer; ++e) o[e] = Elem<T>::from_float(acc[e] / l);
}

// ============================================================================
// Candidates 1-3: split-K (flash-decoding). Block (split, head, sequence),
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

template <typename T, int HD, int CHUNK>
__global__ void __launch_bounds__(kThreads)
    decode_combine_kernel(const T* __restrict__ cache_v, const int32_t* __restrict__ past_ptr, T* __restrict__ out,
                          float* __restrict__ scratch, int n_head, int q_len, int capacity, int n_splits) {
  const int h = blockIdx.x, b = blockIdx.y;
  const int kv_len = min(*past_ptr + q_len, capacity);
  const int n_live = min((kv_len + CHUNK - 1) / CHUNK, n_splits);
  combine_partials<T, HD>(partials(scratch, gridDim.y, n_head, q_len, n_splits), cache_v, out, b, h, n_head,
                          q_len, n_splits, n_live, kv_len, (static_cast<int64_t>(b) * n_head + h) * capacity);
}

// ---- launchers ---------------------------------------------------------------
// Raw device pointers, one stream, no allocation, no host sync: capturable.
// capacity (max_kv) sizes the grid; past is read on the device.
template <typename T>
using DecodeFn = void (*)(const T* qkv, const T* cache_k, const T* cache_v, const uint8_t* key_valid,
                          const int32_t* past, T* out, float* scratch, int batch, int n_head, int head_dim, int q_len,
                          int capacity, float scale, cudaStream_t stream);

struct Baseline {
  template <typename T, int HD>
  static void run(const T* qkv, const T* ck, const T* cv, const uint8_t* kvalid, const int32_t* past, T* out, float*,
                  int batch, int n_head, int q_len, int capacity, float scale, cudaStream_t st) {
    decode_baseline_kernel<T, HD><<<dim3(q_len, n_head, batch), 32, 0, st>>>(qkv, ck, cv, kvalid, past, out, n_head,
                                                                            q_len, capacity, scale * kLog2e);
  }
};
template <int CHUNK, bool FUSED>
struct Split {
  template <typename T, int HD>
  static void run(const T* qkv, const T* ck, const T* cv, const uint8_t* kvalid, const int32_t* past, T* out,
                  float* scratch, int batch, int n_head, int q_len, int capacity, float scale, cudaStream_t st) {
    const int n_splits = (capacity + CHUNK - 1) / CHUNK;
    decode_split_kernel<T, HD, CHUNK, FUSED><<<dim3(n_splits, n_head, batch), kThreads, 0, st>>>(
        qkv, ck, cv, kvalid, past, out, scratch, n_head, q_len, capacity, n_splits, scale * kLog2e);
    if (!FUSED)
      decode_combine_kernel<T, HD, CHUNK><<<dim3(n_head, batch), kThreads, 0, st>>>(cv, past, out, scratch, n_head,
                                                                                    q_len, capacity, n_splits);
  }
};
template <typename K, typename T>
void dispatch_hd(const T* qkv, const T* ck, const T* cv, const uint8_t* kvalid, const int32_t* past, T* out,
                 float* scratch, int batch, int n_head, int head_dim, int q_len, int capacity, float scale,
                 cudaStream_t st) {
  if (batch <= 0 || n_head <= 0) return;
  if (q_len < 1 || q_len > kMaxQ || capacity < 1) {
    std::fprintf(stderr, "decode: q_len %d (1..%d), capacity %d\n", q_len, kMaxQ, capacity);
    std::exit(2);
  }
#define DECODE_CASE(HD) \
  case HD: K::template run<T, HD>(qkv, ck, cv, kvalid, past, out, scratch, batch, n_head, q_len, capacity, scale, st); break;
  switch (head_dim) {
    DECODE_CASE(32)
    DECODE_CASE(64)
    DECODE_CASE(128)
    default: std::fprintf(stderr, "head_dim %d not instantiated (32, 64, 128)\n", head_dim); std::exit(2);
  }
#undef DECODE_CASE
}

template <typename T>
struct Candidate {
  const char* name;
  DecodeFn<T> fn;
};
template <typename T>
std::vector<Candidate<T>> candidates() {
  return {{"c0-baseline", dispatch_hd<Baseline, T>},
          {"c1-split64+comb", dispatch_hd<Split<64, false>, T>},
          {"c2-split64-last", dispatch_hd<Split<64, true>, T>},
          {"c3-split32-last", dispatch_hd<Split<32, true>, T>}};
}

__global__ void advance_past_kernel(int32_t* past, int q_len) { *past += q_len; }

// ============================================================================
// Host: one decode problem (inputs, device buffers, reference).
enum MaskMode { kNoMask, kHoles, kDeadRow };
struct DecCase {
  std::string name;
  int B, H, hd, q_len, past, capacity;
  MaskMode mask;
};

// Double precision. First mirrors store_kv at `past` into the host cache
// (ck, cv), then computes every output; a query that sees no key averages
// the values of all kv_len keys.
template <typename T>
void decode_reference(const DecCase& c, int past, double scale, const std::vector<T>& qkv, std::vector<T>& ck,
                      std::vector<T>& cv, const uint8_t* mask, std::vector<double>& want) {
  const int C = c.H * c.hd;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.q_len && past + i < c.capacity; ++i)
      for (int h = 0; h < c.H; ++h)
        for (int e = 0; e < c.hd; ++e) {
          const size_t src = (size_t(b) * c.q_len + i) * 3 * C + h * c.hd + e;
          const size_t dst = ((size_t(b) * c.H + h) * c.capacity + past + i) * c.hd + e;
          ck[dst] = qkv[src + C];
          cv[dst] = qkv[src + 2 * C];
        }
  const int kv = std::min(past + c.q_len, c.capacity);
  want.assign(size_t(c.B) * c.q_len * C, 0.0);
  std::vector<double> s(kv);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.H; ++h)
      for (int i = 0; i < c.q_len; ++i) {
        const size_t r0 = (size_t(b) * c.H + h) * c.capacity;
        double mx = -INFINITY;
        for (int j = 0; j < kv; ++j) {
          s[j] = -INFINITY;
          if (j > past + i || (mask && !mask[size_t(b) * c.capacity + j])) continue;
          double d = 0;
          for (int e = 0; e < c.hd; ++e)
            d += double(Elem<T>::to_float(qkv[(size_t(b) * c.q_len + i) * 3 * C + h * c.hd + e])) *
                 Elem<T>::to_float(ck[(r0 + j) * c.hd + e]);
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double* o = &want[(size_t(b) * c.q_len + i) * C + h * c.hd];
        double sum = 0;
        for (int j = 0; j < kv; ++j) {
          const double p = mx == -INFINITY ? 1.0 : std::exp(s[j] - mx);  // none visible: plain mean
          sum += p;
          for (int e = 0; e < c.hd; ++e) o[e] += p * Elem<T>::to_float(cv[(r0 + j) * c.hd + e]);
        }
        for (int e = 0; e < c.hd; ++e) o[e] /= sum;
      }
}

template <typename T>
struct Problem {
  DecCase c;
  int C;
  std::vector<T> qkv, ck, cv;  // host mirrors: the cache as it must be after store_kv
  std::vector<uint8_t> mask;
  DeviceBuffer<T> d_qkv, d_ck, d_cv, d_out;
  DeviceBuffer<uint8_t> d_mask;
  DeviceBuffer<int32_t> d_past;
  DeviceBuffer<float> d_scratch;

  Problem(const DecCase& cs, uint64_t seed)
      : c(cs), C(cs.H * cs.hd), d_qkv(size_t(cs.B) * cs.q_len * 3 * C), d_ck(size_t(cs.B) * cs.H * cs.capacity * cs.hd),
        d_cv(d_ck.n), d_out(size_t(cs.B) * cs.q_len * C), d_mask(size_t(cs.B) * cs.capacity), d_past(1),
        d_scratch((decode_scratch_bytes(cs.B, cs.H, cs.hd, cs.q_len, cs.capacity) + 3) / 4) {
    // Positions >= past are NaN (0xFFFF) before store_kv: a key read past
    // kv_len, or a position store_kv skipped, turns the output NaN.
    const std::vector<float> fk = fast_random_floats(d_ck.n, seed * 3 + 1, 2.0f),
                             fv = fast_random_floats(d_ck.n, seed * 3 + 2);
    ck = to_elem<T>(fk);
    cv = to_elem<T>(fv);
    const size_t tail = size_t(c.capacity - c.past) * c.hd * sizeof(T);
    for (size_t r = 0; r < size_t(c.B) * c.H; ++r) {
      std::memset(static_cast<void*>(&ck[(r * c.capacity + c.past) * c.hd]), 0xFF, tail);
      std::memset(static_cast<void*>(&cv[(r * c.capacity + c.past) * c.hd]), 0xFF, tail);
    }
    d_ck.upload(ck);
    d_cv.upload(cv);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    mask.assign(d_mask.n, 1);
    const int kv = c.past + c.q_len;
    if (c.mask != kNoMask)  // a masked block in the middle plus ~20% random holes
      for (int b = 0; b < c.B; ++b)
        for (int j = 0; j < c.capacity; ++j)
          mask[size_t(b) * c.capacity + j] = !((j >= kv / 3 && j < kv / 2) || rng() % 5 == 0);
    if (c.mask == kDeadRow)  // sequence 0: only the last new key is visible; earlier queries see none
      for (int j = 0; j < c.capacity; ++j) mask[j] = j == kv - 1;
    d_mask.upload(mask);
    d_past.upload({c.past});
    CUDA_CHECK(cudaMemset(d_scratch.p, 0, d_scratch.n * sizeof(float)));  // counters 0; partials below are poisoned
    new_step(seed * 3 + 3);
  }
  // Fresh q/k/v rows for the next call; poisons out and the partials.
  void new_step(uint64_t seed) {
    qkv = to_elem<T>(random_floats(d_qkv.n, seed, 2.0f));
    d_qkv.upload(qkv);
    d_out.poison();
    const int64_t cnt = (int64_t(c.B) * c.H + 3) / 4 * 4;
    CUDA_CHECK(cudaMemset(d_scratch.p + cnt, 0xFF, (d_scratch.n - cnt) * sizeof(float)));
  }
  const uint8_t* mask_ptr() const { return c.mask == kNoMask ? nullptr : d_mask.p; }
  void reference(int past, std::vector<double>& want) {
    decode_reference(c, past, scale(), qkv, ck, cv, c.mask == kNoMask ? nullptr : mask.data(), want);
  }
  // Cache bits and counters after the call: mismatches.
  size_t state_mismatches() const {
    size_t bad = 0;
    const std::vector<T> gk = d_ck.download(), gv = d_cv.download();
    for (size_t e = 0; e < gk.size(); ++e) bad += (bits16(&gk[e]) != bits16(&ck[e])) + (bits16(&gv[e]) != bits16(&cv[e]));
    std::vector<int32_t> cnt(size_t(c.B) * c.H);
    CUDA_CHECK(cudaMemcpy(cnt.data(), d_scratch.p, cnt.size() * 4, cudaMemcpyDeviceToHost));
    for (int x : cnt) bad += x != 0;
    return bad;
  }
  std::vector<float> output() const { return to_floats(d_out.download()); }
  float scale() const { return 1.0f / std::sqrt(float(c.hd)); }
};

// ---- validation ----------------------------------------------------------------
template <typename T>
void validate(const DecCase& dc, const Candidate<T>& cand, uint64_t seed) {
  Problem<T> pb(dc, seed);
  store_kv<T>(pb.d_qkv.p, pb.d_ck.p, pb.d_cv.p, pb.d_past.p, dc.B, dc.q_len, dc.H, dc.hd, dc.capacity, nullptr);
  CUDA_LAUNCH_CHECK();
  cand.fn(pb.d_qkv.p, pb.d_ck.p, pb.d_cv.p, pb.mask_ptr(), pb.d_past.p, pb.d_out.p, pb.d_scratch.p, dc.B, dc.H, dc.hd,
          dc.q_len, dc.capacity, pb.scale(), nullptr);
  CUDA_LAUNCH_CHECK();
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> want;
  pb.reference(dc.past, want);
  check_case(std::string("decode ") + Elem<T>::name + " " + cand.name + " " + dc.name, pb.output(), want,
             Elem<T>::decode_rel, Elem<T>::decode_abs, pb.state_mismatches(), "cache/counter mismatches");
}

// One graph (store_kv, attention, past += q_len) captured once and replayed
// for `steps` decode steps with fresh rows each time: past is only ever
// read on the device, and the split count grows across a partition border.
template <typename T>
void validate_graph(const Candidate<T>& cand, int past0, int steps, uint64_t seed) {
  const DecCase dc{"graph", 2, 4, 64, 1, past0, past0 + steps + 9, kHoles};
  Problem<T> pb(dc, seed);
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  store_kv<T>(pb.d_qkv.p, pb.d_ck.p, pb.d_cv.p, pb.d_past.p, dc.B, dc.q_len, dc.H, dc.hd, dc.capacity, s);
  cand.fn(pb.d_qkv.p, pb.d_ck.p, pb.d_cv.p, pb.mask_ptr(), pb.d_past.p, pb.d_out.p, pb.d_scratch.p, dc.B, dc.H, dc.hd,
          dc.q_len, dc.capacity, pb.scale(), s);
  advance_past_kernel<<<1, 1, 0, s>>>(pb.d_past.p, dc.q_len);
  CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<float> got;
  std::vector<double> want, w;
  for (int step = 0; step < steps; ++step) {
    if (step) pb.new_step(seed * 7 + step);
    CUDA_CHECK(cudaDeviceSynchronize());  // uploads / memsets (legacy stream) before the non-blocking stream
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    pb.reference(past0 + step * dc.q_len, w);
    const std::vector<float> g = pb.output();
    got.insert(got.end(), g.begin(), g.end());
    want.insert(want.end(), w.begin(), w.end());
  }
  size_t bad = pb.state_mismatches();
  bad += pb.d_past.download()[0] != past0 + steps * dc.q_len;
  char name[128];
  std::snprintf(name, sizeof name, "decode %s %s graph x%d steps, past %d..%d", Elem<T>::name, cand.name, steps, past0,
                past0 + steps - 1);
  check_case(name, got, want, Elem<T>::decode_rel, Elem<T>::decode_abs, bad, "cache/counter/past mismatches");
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  CUDA_CHECK(cudaStreamDestroy(s));
}

std::vector<DecCase> validation_cases(bool small) {
  std::vector<DecCase> cs;
  const char* mname[] = {"nomask", "holes", "deadrow"};
  auto add = [&](int B, int H, int hd, int q_len, int past, int cap, MaskMode m) {
    char n[96];
    std::snprintf(n, sizeof n, "B%d H%d hd%d q%d past%d cap%d %s", B, H, hd, q_len, past, cap, mname[m]);
    cs.push_back({n, B, H, hd, q_len, past, cap, m});
  };
  if (small) {  // compute-sanitizer
    for (int past : {0, 17, 70})
      for (int q : {1, 3}) {
        add(1, 2, 64, q, past, 80, kNoMask);
        add(2, 2, 64, q, past, 80, kHoles);
      }
    add(2, 2, 64, 3, 40, 43, kDeadRow);
    add(2, 4, 32, 2, 33, 40, kHoles);
    add(1, 1, 128, 4, 60, 64, kHoles);
    return cs;
  }
  for (int past : {0, 1, 17, 511, 1023})
    for (int B : {1, 4})
      for (int q : {1, 4})
        for (MaskMode m : {kNoMask, kHoles}) add(B, 12, 64, q, past, 1040, m);
  add(4, 12, 64, 3, 62, 1040, kDeadRow);
  add(1, 12, 64, 3, 1021, 1024, kDeadRow);  // full cache: kv_len = capacity
  add(4, 12, 64, 1, 1023, 1024, kHoles);
  add(4, 4, 32, 2, 17, 1040, kHoles);
  add(4, 4, 32, 4, 700, 1040, kHoles);
  add(2, 2, 128, 1, 511, 1040, kHoles);
  add(2, 2, 128, 4, 1023, 1040, kNoMask);
  return cs;
}

template <typename T>
void validate_all(bool small, uint64_t& seed) {
  for (const DecCase& c : validation_cases(small))
    for (const auto& cand : candidates<T>()) validate<T>(c, cand, ++seed);
  for (const auto& cand : candidates<T>()) validate_graph<T>(cand, small ? 29 : 61, small ? 5 : 8, ++seed);
}

// ---- benchmark -----------------------------------------------------------------
// Two timings per shape: graph = per call among 20 back to back in one CUDA
// graph (steady state; K/V warm in L2, as in a real step of a small model);
// cold = one plain launch after an L2 flush (launch latency included).
// GB/s counts the K and V bytes of the kv_len live keys.
template <typename T>
void bench_shape(int B, int past, int q_len, DeviceBuffer<char>& flush, cudaStream_t s) {
  const DecCase dc{"bench", B, 12, 64, q_len, past, 1024, kNoMask};
  Problem<T> pb(dc, 99);
  CUDA_CHECK(cudaDeviceSynchronize());  // its uploads and memsets ran on the legacy stream
  auto store = [&] { store_kv<T>(pb.d_qkv.p, pb.d_ck.p, pb.d_cv.p, pb.d_past.p, B, q_len, 12, 64, 1024, s); };
  store();
  const int kv = past + q_len;
  const double bytes = 2.0 * B * 12 * kv * 64 * sizeof(T), flops = 4.0 * 64 * kv * q_len * B * 12;
  char name[128];
  for (const auto& cand : candidates<T>()) {
    auto call = [&] {
      cand.fn(pb.d_qkv.p, pb.d_ck.p, pb.d_cv.p, nullptr, pb.d_past.p, pb.d_out.p, pb.d_scratch.p, B, 12, 64, q_len,
              1024, pb.scale(), s);
    };
    call();
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaStreamSynchronize(s));
    std::snprintf(name, sizeof name, "decode %s B%d q%d past%d %s graph", Elem<T>::name, B, q_len, past, cand.name);
    report(name, graph_ms_per_call(call, s), bytes, flops);
    std::snprintf(name, sizeof name, "decode %s B%d q%d past%d %s cold", Elem<T>::name, B, q_len, past, cand.name);
    report(name, cold_ms(call, flush.p, flush.n, s), bytes, flops);
  }
  std::snprintf(name, sizeof name, "store_kv %s B%d q%d graph", Elem<T>::name, B, q_len);
  report(name, graph_ms_per_call(store, s), 4.0 * B * q_len * 12 * 64 * sizeof(T), 0);
}

int main(int argc, char** argv) {
  const Options opt = parse_options(argc, argv, "decode attention against a KV cache (past on the device): "
                                                "validation vs a double CPU reference, then benchmark");
  uint64_t seed = 5000;
  validate_all<__half>(opt.validate_only, seed);
  validate_all<__nv_bfloat16>(opt.validate_only, seed);
  if (!opt.validate_only) {
    DeviceBuffer<char> flush(size_t(256) << 20);  // > 4x the 60 MB L2
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    std::printf("H12 hd64 capacity 1024; graph = per call in a graph of 20 (L2 warm), cold = one launch after an "
                "L2 flush\n");
    for (int B : {1, 4})
      for (int past : {1023, 50}) {
        bench_shape<__nv_bfloat16>(B, past, 1, flush, s);
        bench_shape<__half>(B, past, 1, flush, s);
      }
    bench_shape<__nv_bfloat16>(4, 1020, 4, flush, s);  // speculative / multi-token step
    CUDA_CHECK(cudaStreamDestroy(s));
  }
  return finish();
}
