// Causal attention over many queries (a prompt), no KV cache: candidates,
// a double-precision CPU reference, a validator and a benchmark.
//
// Layout (GPT-2, transformers): qkv [rows_total, 3C] holds q | k | v, C =
// n_head·hd, head h at columns [h·hd, (h+1)·hd) of each; out [rows_total, C].
// Sequence b starts at row seq_offset[b], has seq_rows[b] query rows and
// seq_valid[b] valid keys: key j of b is visible to query t iff j <= t and
// j < seq_valid[b]. Packed variable-length batches (offsets = prefix sums,
// rows = valid = length) and right-padded [B, T] batches (offset b·T, rows T,
// valid = length; padded queries attend the valid keys, as HF) are the same
// call. Every query sees key 0 (valid >= 1).
//
// Candidates:
//   0 baseline  one warp per query, fp32, online softmax, no shared memory.
//   1 mma-w4    flash-attention-2: 64 queries per block (4 warps x 16 rows),
//               64-key tiles double-buffered by cp.async, ldmatrix,
//               mma.sync m16n8k16, fp32 online softmax in registers.
//   2 mma-w8    the same with 128 queries per block (8 warps): each K/V tile
//               loaded once serves twice the queries.
// Build: dev/cuda/build.sh. Run: bin/attention_prefill [--validate-only].
#include "attention_util.cuh"

using namespace dev;

// ============================================================================
// Candidate 0: one warp per query. Lane l holds dims [l·HD/32, (l+1)·HD/32)
// of q and of the output; each key costs a 5-shuffle warp reduction. Slow,
// simple, and independent of the tensor-core code: the GPU-side cross-check.
template <typename T, int HD>
__global__ void __launch_bounds__(128)
    prefill_baseline_kernel(const T* __restrict__ qkv, T* __restrict__ out, const int32_t* __restrict__ seq_offset,
                            const int32_t* __restrict__ seq_rows, const int32_t* __restrict__ seq_valid, int n_head,
                            float scale_log2) {
  constexpr int kPer = HD / 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x * 4 + warp;
  if (t >= seq_rows[b]) return;  // no block barrier below: per-warp exit is fine
  const int C = n_head * HD;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const int64_t first = seq_offset[b];
  const T* seq = qkv + first * ld + h * HD + lane * kPer;
  float q[kPer], acc[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    q[i] = Elem<T>::to_float(seq[t * ld + i]) * scale_log2;  // scores in log2 units: exp2f below
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const int end = min(t + 1, seq_valid[b]);
  for (int j = 0; j < end; ++j) {
    const T* kr = seq + j * ld + C;
    const T* vr = seq + j * ld + 2 * C;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) s += q[i] * Elem<T>::to_float(kr[i]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    const float m_new = fmaxf(m, s);
    const float corr = exp2f(m - m_new), p = exp2f(s - m_new);  // first key: corr = exp2(-inf) = 0
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc[i] = acc[i] * corr + p * Elem<T>::to_float(vr[i]);
    m = m_new;
  }
  T* o = out + (first + t) * C + h * HD + lane * kPer;
#pragma unroll
  for (int i = 0; i < kPer; ++i) o[i] = Elem<T>::from_float(acc[i] / l);
}

template <typename T, int HD>
void launch_prefill_baseline(const T* qkv, T* out, const int32_t* off, const int32_t* rows, const int32_t* valid,
                             int batch, int max_rows, int n_head, float scale, cudaStream_t stream) {
  if (batch <= 0 || max_rows <= 0) return;
  const dim3 grid((max_rows + 3) / 4, n_head, batch);
  prefill_baseline_kernel<T, HD><<<grid, 128, 0, stream>>>(qkv, out, off, rows, valid, n_head, scale * kLog2e);
}

// ============================================================================
// Candidates 1, 2: flash-attention-2 on mma.sync.
//
// Block (q tile, head, sequence), W warps; warp w owns query rows
// [q0 + 16w, q0 + 16w + 16). Shared memory: Q [BR][LDS], K and V [2][BC][LDS]
// (two stages). Rows are padded to LDS = HD + 8 elements (16 bytes more), so
// the 8 row addresses of one ldmatrix phase fall in 8 different 16-byte bank
// groups (row stride = 16 mod 128 bytes): no conflicts, no swizzle.
//
// Per key tile, per warp: S (16 x 64, fp32, 8 n-tiles of m16n8 = 32 floats
// per thread) = Q·Kᵀ with Q fragments held in registers for the whole loop;
// scale, mask (only on tiles that cross the diagonal or the valid end), row
// max over the quad (the 4 lanes holding one row), rescale O and l, P =
// exp2(S - m); then P is repacked to 16-bit A fragments straight from the
// accumulator layout (the C layout of n-tiles 2kk and 2kk+1 is the A layout
// of k-step kk) and O += P·V with V fragments from ldmatrix.trans.
//
// Keys: tile 0 always holds key 0, which every row sees (valid >= 1, t >= 0),
// so after the first tile every row max is finite and exp2(m_old - m_new)
// never sees -inf - -inf. Key rows past kv_end load as zeros (cp.async
// src-size 0): masked in S, and 0-valued in V (no NaN from stale memory).
template <typename T, int HD, int W>
struct MmaCfg {
  static constexpr int BR = 16 * W, BC = 64, LDS = HD + 8, NT = 32 * W;
  static constexpr size_t smem_bytes = static_cast<size_t>(BR + 4 * BC) * LDS * sizeof(T);
  static_assert(HD % 16 == 0 && HD >= 32 && HD <= 256, "head_dim multiple of 16");
};

// NROWS rows [r0, r0 + NROWS) of one head's q, k or v (g: row 0 of this
// sequence at this head, ld: qkv row stride) into shared memory; rows >= lim
// are zero-filled. 16 bytes per cp.async; every thread issues the same count.
template <typename T, int HD, int NT, int NROWS>
__device__ __forceinline__ void load_rows_async(T* s, const T* g, int64_t ld, int r0, int lim) {
  constexpr int kChunks = HD / 8, LDS = HD + 8;
#pragma unroll
  for (int idx = threadIdx.x; idx < NROWS * kChunks; idx += NT) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool ok = r0 + r < lim;
    const T* src = ok ? g + static_cast<int64_t>(r0 + r) * ld + c * 8 : g;  // g: a valid address, never read
    cp_async16(s + r * LDS + c * 8, src, ok);
  }
}

template <typename T, int HD, int W>
__global__ void __launch_bounds__(32 * W)
    prefill_mma_kernel(const T* __restrict__ qkv, T* __restrict__ out, const int32_t* __restrict__ seq_offset,
                       const int32_t* __restrict__ seq_rows, const int32_t* __restrict__ seq_valid, int n_head,
                       float scale_log2) {
  using Cfg = MmaCfg<T, HD, W>;
  constexpr int BR = Cfg::BR, BC = Cfg::BC, LDS = Cfg::LDS, NT = Cfg::NT;
  extern __shared__ uint4 smem_u4[];  // uint4: 16-byte alignment for cp.async / ldmatrix
  T* sQ = reinterpret_cast<T*>(smem_u4);
  T* sK = sQ + BR * LDS;
  T* sV = sK + 2 * BC * LDS;

  const int b = blockIdx.z, h = blockIdx.y;
  // Heavy tiles first: the last q tile of a sequence has the most keys.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
  const int rows = seq_rows[b];
  if (q0 >= rows) return;  // whole block: before any barrier
  const int valid = seq_valid[b];
  const int C = n_head * HD;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const int64_t first = seq_offset[b];
  const T* gQ = qkv + first * ld + h * HD;
  const T* gK = gQ + C;
  const T* gV = gQ + 2 * C;
  const int kv_end = min(min(q0 + BR, rows), valid);  // no row of this tile sees a key >= kv_end
  const int n_tiles = (kv_end + BC - 1) / BC;         // >= 1: kv_end >= 1

  load_rows_async<T, HD, NT, BR>(sQ, gQ, ld, q0, rows);
  load_rows_async<T, HD, NT, BC>(sK, gK, ld, 0, kv_end);
  load_rows_async<T, HD, NT, BC>(sV, gV, ld, 0, kv_end);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  const int row_lo = q0 + warp * 16 + g;  // query row of accumulator elements 0,1; elements 2,3: row_lo + 8
  uint32_t qf[HD / 16][4];
  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};

  for (int it = 0; it < n_tiles; ++it) {
    const int st = it & 1;
    if (it + 1 < n_tiles) {
      // Stage st^1 was last read in iteration it-1, which ended in a barrier.
      load_rows_async<T, HD, NT, BC>(sK + (st ^ 1) * BC * LDS, gK, ld, (it + 1) * BC, kv_end);
      load_rows_async<T, HD, NT, BC>(sV + (st ^ 1) * BC * LDS, gV, ld, (it + 1) * BC, kv_end);
      cp_async_commit();
      cp_async_wait<1>();  // everything but the group just issued: tile it (and Q) landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // other threads' copies visible
    if (it == 0) {
      // A fragments of Q: matrix m of ldmatrix = rows +8·(m%2), cols +8·(m/2).
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk)
        ldmatrix_x4(qf[kk], sQ + (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + kk * 16 + (lane / 16) * 8);
    }
    const T* tK = sK + st * BC * LDS;
    const T* tV = sV + st * BC * LDS;

    // S = Q·Kᵀ. B[k=dim][n=key] = K[key][dim]: K rows are B's columns, so a
    // plain ldmatrix gives B fragments. Matrix m: keys +8·(m/2), dims +8·(m%2)
    // -> regs 0,1 = n-tile 2np, regs 2,3 = n-tile 2np+1.
    float s[BC / 8][4];
#pragma unroll
    for (int n = 0; n < BC / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < BC / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, tK + (np * 16 + (lane % 8) + (lane / 16) * 8) * LDS + kk * 16 + ((lane / 8) % 2) * 8);
        mma16816<T>(s[2 * np], qf[kk], kb[0], kb[1]);
        mma16816<T>(s[2 * np + 1], qf[kk], kb[2], kb[3]);
      }
    }

    const int kv0 = it * BC;
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] *= scale_log2;
    // Warp-uniform: the tile crosses this warp's diagonal or the valid end.
    if (kv0 + BC - 1 > q0 + warp * 16 || kv0 + BC > valid) {
#pragma unroll
      for (int n = 0; n < BC / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = kv0 + n * 8 + 2 * c4 + (e & 1), row = row_lo + (e >> 1) * 8;
          if (col > row || col >= valid) s[n][e] = -INFINITY;
        }
    }
    // Online softmax; each row lives in the 4 lanes of a quad.
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_r[r], mx);
      // Guard for a row with nothing visible yet (cannot happen with valid >=
      // 1, see above): keeps exp2 away from -inf - -inf = NaN.
      m_use[r] = m_new == -INFINITY ? 0.f : m_new;
      alpha[r] = exp2f(m_r[r] - m_use[r]);
      m_r[r] = m_new;
    }
    float rowsum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[n][e] - m_use[e >> 1]);
        s[n][e] = p;
        rowsum[e >> 1] += p;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_r[r] = l_r[r] * alpha[r] + rowsum[r];  // per-lane partial; quad-summed at the end
#pragma unroll
    for (int n = 0; n < HD / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e >> 1];

    // O += P·V. B[k=key][n=dim] = V[key][dim] is row-major in k, hence
    // ldmatrix.trans. Matrix m: keys +8·(m%2), dims +8·(m/2) -> regs 0,1 =
    // n-tile 2np, regs 2,3 = n-tile 2np+1.
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      const uint32_t pa[4] = {Elem<T>::pack2(s[2 * kk][0], s[2 * kk][1]), Elem<T>::pack2(s[2 * kk][2], s[2 * kk][3]),
                              Elem<T>::pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              Elem<T>::pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < HD / 16; ++np) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, tV + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + np * 16 + (lane / 16) * 8);
        mma16816<T>(o[2 * np], pa, vb[0], vb[1]);
        mma16816<T>(o[2 * np + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // stage st is refilled in iteration it+1
  }

  // Normalise, stage the warp's 16 x HD tile in its own rows of sQ (read only
  // by this warp's ldmatrix, long done), then 16-byte coalesced stores.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_r[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.f ? 1.f / l : 0.f;
  }
  T* sO = sQ + warp * 16 * LDS;
  __syncwarp();
#pragma unroll
  for (int n = 0; n < HD / 8; ++n)
#pragma unroll
    for (int r = 0; r < 2; ++r)
      *reinterpret_cast<uint32_t*>(sO + (g + 8 * r) * LDS + n * 8 + 2 * c4) =
          Elem<T>::pack2(o[n][2 * r] * inv[r], o[n][2 * r + 1] * inv[r]);
  __syncwarp();
#pragma unroll
  for (int idx = lane; idx < 16 * (HD / 8); idx += 32) {
    const int r = idx / (HD / 8), c = idx % (HD / 8), t = q0 + warp * 16 + r;
    if (t < rows)
      *reinterpret_cast<uint4*>(out + (first + t) * C + h * HD + c * 8) =
          *reinterpret_cast<const uint4*>(sO + r * LDS + c * 8);
  }
}

template <typename T, int HD, int W>
void launch_prefill_mma(const T* qkv, T* out, const int32_t* off, const int32_t* rows, const int32_t* valid, int batch,
                        int max_rows, int n_head, float scale, cudaStream_t stream) {
  using Cfg = MmaCfg<T, HD, W>;
  // Above 48 KiB a block needs the opt-in; done once per instantiation, at
  // the first call (before any graph capture: it is not a stream operation).
  static const bool opted_in = [] {
    if (Cfg::smem_bytes > 48 * 1024)
      CUDA_CHECK(cudaFuncSetAttribute(prefill_mma_kernel<T, HD, W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(Cfg::smem_bytes)));
    return true;
  }();
  (void)opted_in;
  if (batch <= 0 || max_rows <= 0) return;
  const dim3 grid((max_rows + Cfg::BR - 1) / Cfg::BR, n_head, batch);
  prefill_mma_kernel<T, HD, W><<<grid, Cfg::NT, Cfg::smem_bytes, stream>>>(qkv, out, off, rows, valid, n_head,
                                                                            scale * kLog2e);
}

// head_dim at run time -> template (other head dims stay on the product's
// generic kernel). One struct per candidate so that one switch serves all.
template <typename T>
using PrefillFn = void (*)(const T*, T*, const int32_t*, const int32_t*, const int32_t*, int, int, int, int, float,
                           cudaStream_t);
struct Baseline {
  template <typename T, int HD>
  static void run(const T* qkv, T* out, const int32_t* off, const int32_t* rows, const int32_t* valid, int batch,
                  int max_rows, int n_head, float scale, cudaStream_t st) {
    launch_prefill_baseline<T, HD>(qkv, out, off, rows, valid, batch, max_rows, n_head, scale, st);
  }
};
template <int W>
struct Mma {
  template <typename T, int HD>
  static void run(const T* qkv, T* out, const int32_t* off, const int32_t* rows, const int32_t* valid, int batch,
                  int max_rows, int n_head, float scale, cudaStream_t st) {
    launch_prefill_mma<T, HD, W>(qkv, out, off, rows, valid, batch, max_rows, n_head, scale, st);
  }
};
template <typename K, typename T>
void dispatch_hd(const T* qkv, T* out, const int32_t* off, const int32_t* rows, const int32_t* valid, int batch,
                 int max_rows, int n_head, int head_dim, float scale, cudaStream_t st) {
  switch (head_dim) {
    case 32: K::template run<T, 32>(qkv, out, off, rows, valid, batch, max_rows, n_head, scale, st); break;
    case 64: K::template run<T, 64>(qkv, out, off, rows, valid, batch, max_rows, n_head, scale, st); break;
    case 128: K::template run<T, 128>(qkv, out, off, rows, valid, batch, max_rows, n_head, scale, st); break;
    default: std::fprintf(stderr, "head_dim %d not instantiated (32, 64, 128)\n", head_dim); std::exit(2);
  }
}

// The product-facing entry points (the current best candidate): raw device
// pointers, one stream, no allocation, no host sync (graph-capturable once
// the first call has run).
void attention_prefill_f16(const __half* qkv, __half* out, const int32_t* seq_offset, const int32_t* seq_rows,
                           const int32_t* seq_valid, int batch, int max_rows, int n_head, int head_dim, float scale,
                           cudaStream_t stream) {
  dispatch_hd<Mma<4>, __half>(qkv, out, seq_offset, seq_rows, seq_valid, batch, max_rows, n_head, head_dim, scale,
                                 stream);
}
void attention_prefill_bf16(const __nv_bfloat16* qkv, __nv_bfloat16* out, const int32_t* seq_offset,
                            const int32_t* seq_rows, const int32_t* seq_valid, int batch, int max_rows, int n_head,
                            int head_dim, float scale, cudaStream_t stream) {
  dispatch_hd<Mma<4>, __nv_bfloat16>(qkv, out, seq_offset, seq_rows, seq_valid, batch, max_rows, n_head, head_dim,
                                        scale, stream);
}

template <typename T>
struct Candidate {
  const char* name;
  PrefillFn<T> fn;
};
template <typename T>
std::vector<Candidate<T>> candidates() {
  return {{"c0-baseline", dispatch_hd<Baseline, T>},
          {"c1-mma-w4", dispatch_hd<Mma<4>, T>},
          {"c2-mma-w8", dispatch_hd<Mma<8>, T>}};
}

// ============================================================================
// Host side: layouts, reference, validation, benchmark.
struct Layout {
  std::vector<int32_t> offset, rows, valid;
  int64_t rows_total = 0;
  int max_rows = 0;
  int batch() const { return static_cast<int>(offset.size()); }
  // Query-key pairs that attend (causal FLOPs: 4·hd per pair per head).
  double pairs() const {
    double n = 0;
    for (int b = 0; b < batch(); ++b)
      for (int t = 0; t < rows[b]; ++t) n += std::min(t + 1, valid[b]);
    return n;
  }
};
// Packed; `gap` rows between sequences belong to no one: their output must
// keep its poison (catches writes past a sequence).
Layout packed(const std::vector<int>& lengths, int gap = 0) {
  Layout L;
  for (int len : lengths) {
    L.offset.push_back(static_cast<int32_t>(L.rows_total));
    L.rows.push_back(len);
    L.valid.push_back(len);
    L.rows_total += len + gap;
    L.max_rows = std::max(L.max_rows, len);
  }
  return L;
}
Layout padded(const std::vector<int>& lengths, int T) {
  Layout L;
  for (int len : lengths) {
    L.offset.push_back(static_cast<int32_t>(L.rows_total));
    L.rows.push_back(T);
    L.valid.push_back(len);
    L.rows_total += T;
  }
  L.max_rows = T;
  return L;
}

// Double precision; `covered` marks the rows some sequence owns.
void reference(const std::vector<float>& qkv, const Layout& L, int H, int hd, double scale, std::vector<double>& out,
               std::vector<char>& covered) {
  const int64_t C = static_cast<int64_t>(H) * hd, ld = 3 * C;
  out.assign(L.rows_total * C, 0.0);
  covered.assign(L.rows_total, 0);
  std::vector<double> s, acc(hd);
  for (int b = 0; b < L.batch(); ++b) {
    const int64_t f = L.offset[b];
    for (int t = 0; t < L.rows[b]; ++t) covered[f + t] = 1;
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < L.rows[b]; ++t) {
        const int end = std::min(t + 1, L.valid[b]);
        const float* q = &qkv[(f + t) * ld + h * hd];
        s.assign(end, 0.0);
        double mx = -INFINITY;
        for (int j = 0; j < end; ++j) {
          const float* k = &qkv[(f + j) * ld + C + h * hd];
          double d = 0;
          for (int e = 0; e < hd; ++e) d += static_cast<double>(q[e]) * k[e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j < end; ++j) {
          const double p = std::exp(s[j] - mx);
          sum += p;
          const float* v = &qkv[(f + j) * ld + 2 * C + h * hd];
          for (int e = 0; e < hd; ++e) acc[e] += p * v[e];
        }
        for (int e = 0; e < hd; ++e) out[(f + t) * C + h * hd + e] = acc[e] / sum;
      }
  }
}

struct Case {
  std::string name;
  Layout L;
  int H, hd;
  float scale_div;  // 1 or layer+1 (scale_attn_by_inverse_layer_idx)
};

template <typename T>
void validate(const Case& c, const Candidate<T>& cand, uint64_t seed) {
  const int64_t C = static_cast<int64_t>(c.H) * c.hd;
  // q, k in [-2, 2] give scores of std ~1.3 at hd 64: a peaked softmax, so
  // a wrong key or a wrong max shows (uniform weights would hide it).
  const std::vector<T> hq = to_elem<T>(random_floats(c.L.rows_total * 3 * C, seed, 2.0f));
  const std::vector<float> hf = to_floats(hq);
  DeviceBuffer<T> qkv(hq), out(c.L.rows_total * C);
  DeviceBuffer<int32_t> off(c.L.offset), rows(c.L.rows), valid(c.L.valid);
  out.poison();
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd)) / c.scale_div;
  cand.fn(qkv.p, out.p, off.p, rows.p, valid.p, c.L.batch(), c.L.max_rows, c.H, c.hd, scale, nullptr);
  CUDA_LAUNCH_CHECK();
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<T> got_raw = out.download();
  std::vector<double> want_all;
  std::vector<char> covered;
  reference(hf, c.L, c.H, c.hd, scale, want_all, covered);
  std::vector<float> got;
  std::vector<double> want;
  size_t bad = 0;
  for (int64_t r = 0; r < c.L.rows_total; ++r)
    for (int64_t e = r * C; e < (r + 1) * C; ++e) {
      if (covered[r]) {
        got.push_back(Elem<T>::to_float(got_raw[e]));
        want.push_back(want_all[e]);
      } else if (bits16(&got_raw[e]) != 0xFFFF) {
        ++bad;
      }
    }
  check_case(std::string("prefill ") + Elem<T>::name + " " + cand.name + " " + c.name, got, want, Elem<T>::prefill_rel,
             Elem<T>::prefill_abs, bad);
}

std::vector<Case> validation_cases(bool small) {
  std::vector<Case> cs;
  const std::vector<int> odd = {1, 7, 50, 129, 300, 1024};
  if (small) {  // compute-sanitizer: every path, tiny sizes
    cs.push_back({"packed+gaps {1,7,50,129} H2 hd64", packed({1, 7, 50, 129}, 3), 2, 64, 1.f});
    cs.push_back({"padded T130 {1,50,130} H2 hd64", padded({1, 50, 130}, 130), 2, 64, 1.f});
    cs.push_back({"packed {7,70,65} H4 hd32 /3", packed({7, 70, 65}), 4, 32, 3.f});
    cs.push_back({"padded T97 {33,97} H1 hd128", padded({33, 97}, 97), 1, 128, 1.f});
    return cs;
  }
  cs.push_back({"packed+gaps {1,7,50,129,300,1024} H12 hd64", packed(odd, 5), 12, 64, 1.f});
  cs.push_back({"padded T1024 {1,7,50,129,300,1024} H12 hd64", padded(odd, 1024), 12, 64, 1.f});
  std::mt19937 rng(7);
  std::vector<int> mix(24);
  for (int& x : mix) x = 1 + static_cast<int>(rng() % 200);
  cs.push_back({"packed 24 mixed 1..200 H12 hd64 /5", packed(mix), 12, 64, 5.f});
  cs.push_back({"padded T200 24 mixed H12 hd64", padded(mix, 200), 12, 64, 1.f});
  cs.push_back({"packed {1,7,50,129,300,1024} H4 hd32", packed(odd), 4, 32, 1.f});
  cs.push_back({"padded T300 {1,129,300} H4 hd32", padded({1, 129, 300}, 300), 4, 32, 1.f});
  cs.push_back({"packed+gaps {1,7,129,300} H2 hd128", packed({1, 7, 129, 300}, 2), 2, 128, 1.f});
  cs.push_back({"padded T257 {3,200,257} H2 hd128", padded({3, 200, 257}, 257), 2, 128, 1.f});
  return cs;
}

template <typename T>
void validate_all(bool small, uint64_t& seed) {
  for (const Case& c : validation_cases(small))
    for (const auto& cand : candidates<T>()) validate<T>(c, cand, ++seed);
}

template <typename T>
void bench_shape(const char* label, const Layout& L, int H, int hd, uint64_t seed) {
  const int64_t C = static_cast<int64_t>(H) * hd;
  DeviceBuffer<T> qkv(to_elem<T>(random_floats(L.rows_total * 3 * C, seed, 2.0f))), out(L.rows_total * C);
  DeviceBuffer<int32_t> off(L.offset), rows(L.rows), valid(L.valid);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const double flops = 4.0 * hd * L.pairs() * H;
  const double bytes = static_cast<double>(L.rows_total) * 4 * C * sizeof(T);  // read q|k|v, write out
  float base_ms = 0;
  for (const auto& cand : candidates<T>()) {
    const float ms = time_ms([&] {
      cand.fn(qkv.p, out.p, off.p, rows.p, valid.p, L.batch(), L.max_rows, H, hd, scale, nullptr);
    });
    CUDA_LAUNCH_CHECK();
    if (!base_ms) base_ms = ms;
    char name[128];
    std::snprintf(name, sizeof name, "prefill %s %s %s", Elem<T>::name, label, cand.name);
    report(name, ms, bytes, flops);
    std::printf("  -> x%.1f vs c0-baseline, %.1f%% of 790 TFLOP/s\n", base_ms / ms,
                flops / (ms * 1e-3) * 1e-12 / 790 * 100);
  }
}

template <typename T>
void bench_all() {
  // AG News-like lengths: 20..120 tokens, skewed to a mean of ~51 as the
  // real texts (20 + 100·u^2.2, u uniform: mean 20 + 100/3.2).
  std::mt19937 rng(2024);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int> ag(256);
  for (int& x : ag) x = 20 + static_cast<int>(std::lround(100.0 * std::pow(u(rng), 2.2)));
  double mean = 0;
  for (int x : ag) mean += x;
  std::printf("(a) 256 packed, lengths 20..120, mean %.1f; (b) 8 x 1024 padded full; (c) 1 x 51. H12 hd64.\n", mean / 256);
  bench_shape<T>("(a) B256 packed 20..120", packed(ag), 12, 64, 11);
  bench_shape<T>("(b) B8xT1024 padded", padded(std::vector<int>(8, 1024), 1024), 12, 64, 12);
  bench_shape<T>("(c) B1xT51", packed({51}), 12, 64, 13);
}

int main(int argc, char** argv) {
  const Options opt = parse_options(argc, argv, "causal prefill attention: validation vs a double CPU reference, then "
                                                "benchmark on GPT-2 124M shapes");
  uint64_t seed = 1000;
  validate_all<__half>(opt.validate_only, seed);
  validate_all<__nv_bfloat16>(opt.validate_only, seed);
  if (!opt.validate_only) {
    bench_all<__nv_bfloat16>();
    bench_all<__half>();
  }
  return finish();
}
