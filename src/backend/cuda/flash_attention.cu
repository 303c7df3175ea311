// Causal self-attention over many queries (prompts, classification
// batches, perplexity windows) on tensor cores: flash-attention-2 with
// mma.sync m16n8k16, moved from the dev/cuda harness (attention_prefill.cu,
// candidate "mma-w4") where it was validated against a double-precision
// reference, under memcheck, and timed on an H200: 90 us for 8 x 1024
// tokens of GPT-2 124M (143 TFLOP/s of causal work), 48 us for 256 packed
// AG News-length sequences (docs/cuda.md).
//
// Layout: qkv [rows_total, 3C] holds q | k | v (C = n_head·hd, head h at
// columns [h·hd, (h+1)·hd)); out [rows_total, C]. Sequence b starts at row
// seq_offset[b], has seq_rows[b] query rows and seq_valid[b] valid keys: key
// j of b is visible to query t iff j <= t and j < seq_valid[b]. Packed
// variable-length batches (offsets = prefix sums, rows = valid = length) and
// right-padded [B, T] batches (offset b·T, rows T, valid = length; padded
// queries attend the valid keys, as HF) are the same call. Every query sees
// key 0 (valid >= 1).
#include "backend/cuda/flash_attention.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mma.cuh"

namespace gpt2q::cuda {

namespace {

// ============================================================================
// Flash-attention-2 on mma.sync (the harness's candidate 1, "mma-w4").
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
      check_cuda(cudaFuncSetAttribute(prefill_mma_kernel<T, HD, W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(Cfg::smem_bytes)),
                 "cudaFuncSetAttribute (flash attention shared memory)");
    return true;
  }();
  (void)opted_in;
  if (batch <= 0 || max_rows <= 0) return;
  const dim3 grid((max_rows + Cfg::BR - 1) / Cfg::BR, n_head, batch);
  prefill_mma_kernel<T, HD, W><<<grid, Cfg::NT, Cfg::smem_bytes, stream>>>(qkv, out, off, rows, valid, n_head,
                                                                            scale * kLog2e);
  check_launch("flash attention kernel");
}

template <typename T>
void dispatch(const void* qkv, void* out, const int32_t* off, const int32_t* rows, const int32_t* valid, int batch,
              int max_rows, int n_head, int head_dim, float scale, cudaStream_t st) {
  const T* q = static_cast<const T*>(qkv);
  T* o = static_cast<T*>(out);
  switch (head_dim) {
    case 32: launch_prefill_mma<T, 32, 4>(q, o, off, rows, valid, batch, max_rows, n_head, scale, st); break;
    case 64: launch_prefill_mma<T, 64, 4>(q, o, off, rows, valid, batch, max_rows, n_head, scale, st); break;
    case 128: launch_prefill_mma<T, 128, 4>(q, o, off, rows, valid, batch, max_rows, n_head, scale, st); break;
    default: fail_bad_value("flash attention: head_dim not instantiated (32, 64, 128)", head_dim);
  }
}

}  // namespace

bool flash_attention_supported(DType dtype, int64_t head_dim) {
  return (dtype == DType::F16 || dtype == DType::BF16) && (head_dim == 32 || head_dim == 64 || head_dim == 128);
}

void flash_attention(const void* qkv, void* out, DType dtype, const int32_t* seq_offset, const int32_t* seq_rows,
                     const int32_t* seq_valid, int64_t batch, int64_t max_rows, int64_t n_head, int64_t head_dim,
                     float scale, cudaStream_t stream) {
  if (batch <= 0 || max_rows <= 0 || n_head <= 0) return;
  if (!flash_attention_supported(dtype, head_dim)) fail_bad_value("flash attention: unsupported head_dim", head_dim);
  if (batch > 65535) fail_too_large("flash attention batch", batch, 65535);
  if (n_head > 65535) fail_too_large("flash attention head count", n_head, 65535);
  const int b = static_cast<int>(batch), r = static_cast<int>(max_rows), h = static_cast<int>(n_head),
            hd = static_cast<int>(head_dim);
  if (dtype == DType::F16)
    dispatch<__half>(qkv, out, seq_offset, seq_rows, seq_valid, b, r, h, hd, scale, stream);
  else
    dispatch<__nv_bfloat16>(qkv, out, seq_offset, seq_rows, seq_valid, b, r, h, hd, scale, stream);
}

}  // namespace gpt2q::cuda
