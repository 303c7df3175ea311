// The training attention without the [B, H, T, T] probabilities
// (attention_train.h's flash kernels), for the bf16 trainer: the forward keeps
// each row's log-sum-exp; the backward recomputes the probabilities from it
// (flash-attention-2, Dao 2023). The forward and the dK/dV kernel come from
// the dev/cuda harness (attention_train.cu, candidate "mma-w4"), validated
// there against a double-precision reference with dropout and padding, under
// memcheck and racecheck, and timed on an H100 for the LM's 16 x 1024 x 12
// heads: forward 307 us (84 TFLOP/s of causal work), backward 832 us with
// dQ by atomics (77 TFLOP/s); the batched kernels move ~14 GB of
// probabilities per layer for the same (docs/cuda.md, runs 14 and 15). Here
// dQ has its own kernel instead of atomics, so that gradients are the same
// bits run after run.
//
// Semantics are the reference's (cpu::reference attention_forward_train /
// attention_backward) with q, k, v, P and the backward's dO and dS rounded to
// bf16 as operands of the tensor-core products (fp32 sums), as PyTorch's
// bf16 autocast runs its flash attention: S = scale·q·kᵀ over the keys a
// query sees (j <= i, key_mask[b][j] != 0); P = softmax(S) in fp32; element
// (b, h, i, j) is kept iff dropout_uniform(key, ((b·H + h)·T + i)·T + j) >= p
// (dropout.cuh, the CPU's masks), scaled by 1 / (1 - p); O = Pd·V. One
// difference: a row that sees no key at all (key 0 masked: never built by
// gpt2q's right padding) gives O = 0 and no gradient here, where the
// reference averages every value (HF's fully masked rows).
//
// Backward, with LSE[i] = m + log(l) and D[i] = Σ dO[i]·O[i] (= Σ_j
// P[i][j]·dP[i][j], dP = dPd through the mask):
//   P = exp(S − LSE), dS = P ⊙ (dP − D), dQ = scale·dS·K, dK = scale·dSᵀ·Q,
//   dV = Pdᵀ·dO.
// Why our own kernel rather than a library: cuDNN's SDPA is not among the
// libraries the build may assume, and its dropout masks are not the CPU's;
// the masks must be the same bits on both devices (issue 13).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "backend/cuda/attention_train.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/dropout.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"

namespace gpt2q::cuda {

namespace {

using backend::TrainAttentionArgs;
using Tb = __nv_bfloat16;

constexpr int kHeadDim = 64;  // every GPT-2 size; other head sizes take the batched kernels
constexpr int kWarps = 4;
constexpr float kLn2 = 0.6931471805599453f;

struct FlashArgs {
  int T, n_head;
  float scale, p;
  uint64_t key;
  const uint8_t* key_mask;  // [B, mask_stride] or null
  int64_t mask_stride;
};

__device__ __forceinline__ bool key_visible(const FlashArgs& a, int b, int j) {
  return j < a.T && (a.key_mask == nullptr || a.key_mask[b * a.mask_stride + j] != 0);
}

// ---- conversions -----------------------------------------------------------

// dst = bf16(src), nearest even, n elements (4 a thread while aligned).
__global__ void to_bf16(const float* __restrict__ src, int64_t n, Tb* __restrict__ dst) {
  const int64_t n4 = n / 4;
  for (int64_t i = grid_start(); i < n4; i += grid_stride()) {
    const float4 v = reinterpret_cast<const float4*>(src)[i];
    uint2 packed;
    packed.x = Elem<Tb>::pack2(v.x, v.y);
    packed.y = Elem<Tb>::pack2(v.z, v.w);
    reinterpret_cast<uint2*>(dst)[i] = packed;
  }
  for (int64_t i = n4 * 4 + grid_start(); i < n; i += grid_stride()) dst[i] = __float2bfloat16_rn(src[i]);
}

// The backward's inputs, a warp per (row r = b·T + i, head h): dO in bf16,
// and D[b, h, i] = Σ dO·O over the head's 64 dims (fp32 sums).
__global__ void backward_prepare(const float* __restrict__ dout, const float* __restrict__ out, int64_t rows,
                                 int n_head, int T, Tb* __restrict__ dout16, float* __restrict__ D) {
  const int64_t w = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (w >= rows * n_head) return;
  const int64_t r = w / n_head;
  const int h = static_cast<int>(w % n_head);
  const int64_t at = r * n_head * kHeadDim + h * kHeadDim + 2 * lane;
  const float2 g = *reinterpret_cast<const float2*>(dout + at), o = *reinterpret_cast<const float2*>(out + at);
  const uint32_t packed = Elem<Tb>::pack2(g.x, g.y);
  *reinterpret_cast<uint32_t*>(dout16 + at) = packed;
  // D from the rounded dO, as dP takes it: dP − D then cancels where the
  // two are equal (a query that sees one key has dS = 0 exactly).
  const float2 gr = Elem<Tb>::to_float2(*reinterpret_cast<const __nv_bfloat162*>(&packed));
  const float s = warp_sum(gr.x * o.x + gr.y * o.y);
  if (lane == 0) D[(r / T * n_head + h) * T + r % T] = s;
}

// ---- forward ---------------------------------------------------------------
// flash_attention.cu's prefill kernel (block: 64 queries of one head and
// sequence, warp w owns rows [q0 + 16w, q0 + 16w + 16); K and V double
// buffered), with the key mask read per tile as two warp ballots, dropout
// applied to P as it is packed for P·V (the row sums l take the undropped P:
// softmax before dropout), fp32 output and the LSE of each row (natural log).
template <int HD, int W>
__global__ void __launch_bounds__(32 * W)
    forward_flash(const Tb* __restrict__ qkv, FlashArgs a, float* __restrict__ out, float* __restrict__ lse) {
  using Cfg = MmaCfg<Tb, HD, W>;
  constexpr int BR = Cfg::BR, BC = Cfg::BC, LDS = Cfg::LDS, NT = Cfg::NT;
  static_assert(BC == 64, "two 32-key ballots per tile");
  extern __shared__ uint4 smem_u4[];
  Tb* sQ = reinterpret_cast<Tb*>(smem_u4);
  Tb* sK = sQ + BR * LDS;
  Tb* sV = sK + 2 * BC * LDS;
  const int T = a.T, b = blockIdx.z, h = blockIdx.y;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;  // heavy tiles first
  const int C = a.n_head * HD;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const Tb* gQ = qkv + int64_t{b} * T * ld + h * HD;
  const Tb* gK = gQ + C;
  const Tb* gV = gQ + 2 * C;
  const int kv_end = min(q0 + BR, T);
  const int n_tiles = (kv_end + BC - 1) / BC;
  const float scale_log2 = a.scale * kLog2e, keep = a.p > 0.f ? 1.f / (1.f - a.p) : 1.f;

  load_rows_async<Tb, HD, NT, BR>(sQ, gQ, ld, q0, T);
  load_rows_async<Tb, HD, NT, BC>(sK, gK, ld, 0, kv_end);
  load_rows_async<Tb, HD, NT, BC>(sV, gV, ld, 0, kv_end);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  const int row_lo = q0 + warp * 16 + g;
  // Dropout counters of this thread's two rows: ((b·H + h)·T + i)·T + j.
  const uint64_t base_lo = ((uint64_t(b) * a.n_head + h) * T + row_lo) * uint64_t(T);
  const uint64_t base_hi = base_lo + 8 * uint64_t(T);
  uint32_t qf[HD / 16][4];
  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};

  for (int it = 0; it < n_tiles; ++it) {
    const int st = it & 1;
    const int kv0 = it * BC;
    // Which of the tile's 64 keys are visible (bit j of seen_lo / seen_hi: key kv0 + j / kv0 + 32 + j).
    const uint32_t seen_lo = __ballot_sync(0xffffffffu, key_visible(a, b, kv0 + lane));
    const uint32_t seen_hi = __ballot_sync(0xffffffffu, key_visible(a, b, kv0 + 32 + lane));
    if (it + 1 < n_tiles) {
      load_rows_async<Tb, HD, NT, BC>(sK + (st ^ 1) * BC * LDS, gK, ld, (it + 1) * BC, kv_end);
      load_rows_async<Tb, HD, NT, BC>(sV + (st ^ 1) * BC * LDS, gV, ld, (it + 1) * BC, kv_end);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk)
        ldmatrix_x4(qf[kk], sQ + (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + kk * 16 + (lane / 16) * 8);
    }
    const Tb* tK = sK + st * BC * LDS;
    const Tb* tV = sV + st * BC * LDS;
    float s[BC / 8][4];
#pragma unroll
    for (int n = 0; n < BC / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < BC / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, tK + (np * 16 + (lane % 8) + (lane / 16) * 8) * LDS + kk * 16 + ((lane / 8) % 2) * 8);
        mma16816<Tb>(s[2 * np], qf[kk], kb[0], kb[1]);
        mma16816<Tb>(s[2 * np + 1], qf[kk], kb[2], kb[3]);
      }
    }
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] *= scale_log2;
    if (kv0 + BC - 1 > q0 + warp * 16 || (seen_lo & seen_hi) != 0xffffffffu) {
#pragma unroll
      for (int n = 0; n < BC / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = n * 8 + 2 * c4 + (e & 1), row = row_lo + (e >> 1) * 8;
          const bool seen = ((j < 32 ? seen_lo >> j : seen_hi >> (j - 32)) & 1u) != 0;
          if (kv0 + j > row || !seen) s[n][e] = -INFINITY;
        }
    }
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_r[r], mx);
      m_use[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with no visible key yet
      alpha[r] = exp2f(m_r[r] - m_use[r]);
      m_r[r] = m_new;
    }
    float rowsum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pe = exp2f(s[n][e] - m_use[e >> 1]);
        rowsum[e >> 1] += pe;
        const uint64_t idx = ((e >> 1) ? base_hi : base_lo) + uint64_t(kv0 + n * 8 + 2 * c4 + (e & 1));
        s[n][e] = (a.p <= 0.f || dropout_uniform(a.key, idx) >= a.p) ? pe * keep : 0.f;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_r[r] = l_r[r] * alpha[r] + rowsum[r];
#pragma unroll
    for (int n = 0; n < HD / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e >> 1];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      const uint32_t pa[4] = {Elem<Tb>::pack2(s[2 * kk][0], s[2 * kk][1]), Elem<Tb>::pack2(s[2 * kk][2], s[2 * kk][3]),
                              Elem<Tb>::pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              Elem<Tb>::pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < HD / 16; ++np) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, tV + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + np * 16 + (lane / 16) * 8);
        mma16816<Tb>(o[2 * np], pa, vb[0], vb[1]);
        mma16816<Tb>(o[2 * np + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();
  }
  // fp32 output straight from the accumulators (8-byte stores); the LSE of
  // each row from lane c4 == 0 of its quad (-inf for a row that saw no key).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_r[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int t = row_lo + 8 * r;
    if (t >= T) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    float* orow = out + (int64_t{b} * T + t) * C + h * HD;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n)
      *reinterpret_cast<float2*>(orow + n * 8 + 2 * c4) = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    if (c4 == 0) lse[(int64_t{b} * a.n_head + h) * T + t] = (m_r[r] + log2f(l)) * kLn2;
  }
}

// ---- backward --------------------------------------------------------------
// Two kernels, each summing its gradients in registers in a fixed order, so
// a step's gradients are the same bits run after run (FA2's single kernel
// adds dQ by atomics, whose order varies). Both recompute P from the LSE.
//
// dK, dV: block (key tile of BC = 16·W keys, head, sequence); warp w owns
// keys [k0 + 16w, k0 + 16w + 16) and holds their K and V fragments for the
// whole loop; the query tiles of BR = 64 rows that see the key tile follow
// in turn. Per query tile, per warp, in the accumulator layout (rows = the
// warp's 16 keys, columns = 64 queries):
//   Sᵀ = K·Qᵀ; P = exp(scale·Sᵀ − LSE) (0 where not seen); Pd = P·z/(1−p);
//   dV += Pdᵀ·dO; dPdᵀ = V·dOᵀ; dSᵀ = P ⊙ (dPd·z/(1−p) − D)·scale;
//   dK += dSᵀ·Q.
// The C layout of n-tiles 2kk, 2kk+1 is the A layout of k-step kk (as P in
// the forward), so Pdᵀ and dSᵀ feed their products from registers.
template <int HD, int W>
struct BwdCfg {
  static constexpr int BC = 16 * W, BR = 64, LDS = HD + 8, NT = 32 * W;
  static constexpr size_t smem_bytes =
      static_cast<size_t>(2 * BC + 2 * BR) * LDS * sizeof(Tb) + 2 * BR * sizeof(float);
};

template <int HD, int W>
__global__ void __launch_bounds__(32 * W)
    backward_dkv_flash(const Tb* __restrict__ qkv, const Tb* __restrict__ dout, const float* __restrict__ lse,
                       const float* __restrict__ Dv, FlashArgs a, float* __restrict__ dqkv) {
  using Cfg = BwdCfg<HD, W>;
  constexpr int BC = Cfg::BC, BR = Cfg::BR, LDS = Cfg::LDS, NT = Cfg::NT;
  extern __shared__ uint4 smem_u4[];
  Tb* sK = reinterpret_cast<Tb*>(smem_u4);
  Tb* sV = sK + BC * LDS;
  Tb* sQ = sV + BC * LDS;
  Tb* sO = sQ + BR * LDS;  // dO
  float* sL = reinterpret_cast<float*>(sO + BR * LDS);
  float* sD = sL + BR;
  const int T = a.T, b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * BC;
  const int C = a.n_head * HD;
  const int64_t ld = 3 * static_cast<int64_t>(C), bh = int64_t{b} * a.n_head + h;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  float dk[HD / 8][4], dv[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  const Tb* gQ = qkv + int64_t{b} * T * ld + h * HD;
  const Tb* gO = dout + int64_t{b} * T * C + h * HD;
  const int key_lo = k0 + warp * 16 + g;  // key of accumulator elements 0, 1; elements 2, 3: key_lo + 8
  const bool seen_lo = key_visible(a, b, key_lo), seen_hi = key_visible(a, b, key_lo + 8);
  // A tile of padding keys only (the classifier's right padding) has zero gradients.
  if (__syncthreads_or(threadIdx.x < BC && key_visible(a, b, k0 + threadIdx.x))) {
    load_rows_async<Tb, HD, NT, BC>(sK, gQ + C, ld, k0, T);
    load_rows_async<Tb, HD, NT, BC>(sV, gQ + 2 * C, ld, k0, T);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t kf[HD / 16][4], vf[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const int off = (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + kk * 16 + (lane / 16) * 8;
      ldmatrix_x4(kf[kk], sK + off);
      ldmatrix_x4(vf[kk], sV + off);
    }
    const float scale_log2 = a.scale * kLog2e, keep = a.p > 0.f ? 1.f / (1.f - a.p) : 1.f;
    for (int q0 = (k0 / BR) * BR; q0 < T; q0 += BR) {
      load_rows_async<Tb, HD, NT, BR>(sQ, gQ, ld, q0, T);
      load_rows_async<Tb, HD, NT, BR>(sO, gO, C, q0, T);
      cp_async_commit();
      for (int t = threadIdx.x; t < BR; t += NT) {
        const bool ok = q0 + t < T;
        sL[t] = ok ? lse[bh * T + q0 + t] * kLog2e : 0.f;  // log2 units
        sD[t] = ok ? Dv[bh * T + q0 + t] : 0.f;
      }
      cp_async_wait<0>();
      __syncthreads();
      // Sᵀ = K·Qᵀ: B[k = dim][n = query] = Q[query][dim], a plain ldmatrix of Q rows.
      float st[BR / 8][4], dpt[BR / 8][4];
#pragma unroll
      for (int n = 0; n < BR / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
        for (int np = 0; np < BR / 16; ++np) {
          const int off = (np * 16 + (lane % 8) + (lane / 16) * 8) * LDS + kk * 16 + ((lane / 8) % 2) * 8;
          uint32_t qb[4], ob[4];
          ldmatrix_x4(qb, sQ + off);
          ldmatrix_x4(ob, sO + off);
          mma16816<Tb>(st[2 * np], kf[kk], qb[0], qb[1]);
          mma16816<Tb>(st[2 * np + 1], kf[kk], qb[2], qb[3]);
          mma16816<Tb>(dpt[2 * np], vf[kk], ob[0], ob[1]);  // dPdᵀ = V·dOᵀ
          mma16816<Tb>(dpt[2 * np + 1], vf[kk], ob[2], ob[3]);
        }
      // P, Pd (into st) and dSᵀ (into dpt).
#pragma unroll
      for (int n = 0; n < BR / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int jj = key_lo + 8 * (e >> 1), qc = n * 8 + 2 * c4 + (e & 1), ii = q0 + qc;
          const bool seen = ii < T && jj <= ii && ((e >> 1) ? seen_hi : seen_lo);
          const float P = seen ? exp2f(st[n][e] * scale_log2 - sL[qc]) : 0.f;
          const bool kept =
              a.p <= 0.f || dropout_uniform(a.key, uint64_t(bh * T + ii) * uint64_t(T) + uint64_t(jj)) >= a.p;
          st[n][e] = kept ? P * keep : 0.f;
          dpt[n][e] = P * ((kept ? dpt[n][e] * keep : 0.f) - sD[qc]) * a.scale;
        }
      // dV += Pdᵀ·dO and dK += dSᵀ·Q: A from registers, B[k = query][n = dim]
      // by ldmatrix.trans (as V in the forward).
#pragma unroll
      for (int kk = 0; kk < BR / 16; ++kk) {
        const uint32_t pa[4] = {Elem<Tb>::pack2(st[2 * kk][0], st[2 * kk][1]),
                                Elem<Tb>::pack2(st[2 * kk][2], st[2 * kk][3]),
                                Elem<Tb>::pack2(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                                Elem<Tb>::pack2(st[2 * kk + 1][2], st[2 * kk + 1][3])};
        const uint32_t sa[4] = {Elem<Tb>::pack2(dpt[2 * kk][0], dpt[2 * kk][1]),
                                Elem<Tb>::pack2(dpt[2 * kk][2], dpt[2 * kk][3]),
                                Elem<Tb>::pack2(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                                Elem<Tb>::pack2(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
        for (int np = 0; np < HD / 16; ++np) {
          const int off = (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + np * 16 + (lane / 16) * 8;
          uint32_t ob[4], qb[4];
          ldmatrix_x4_trans(ob, sO + off);
          ldmatrix_x4_trans(qb, sQ + off);
          mma16816<Tb>(dv[2 * np], pa, ob[0], ob[1]);
          mma16816<Tb>(dv[2 * np + 1], pa, ob[2], ob[3]);
          mma16816<Tb>(dk[2 * np], sa, qb[0], qb[1]);
          mma16816<Tb>(dk[2 * np + 1], sa, qb[2], qb[3]);
        }
      }
      __syncthreads();  // sQ, sO, sL, sD are refilled next tile
    }
  }
  // dK, dV of this warp's keys (zeros for a tile of padding keys).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int jj = k0 + warp * 16 + g + 8 * r;
    if (jj >= T) continue;
    float* row = dqkv + (int64_t{b} * T + jj) * ld + h * HD;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      *reinterpret_cast<float2*>(row + C + n * 8 + 2 * c4) = make_float2(dk[n][2 * r], dk[n][2 * r + 1]);
      *reinterpret_cast<float2*>(row + 2 * C + n * 8 + 2 * c4) = make_float2(dv[n][2 * r], dv[n][2 * r + 1]);
    }
  }
}

// dQ: the forward's blocking (64 queries of one head and sequence, warp w
// owns rows [q0 + 16w, q0 + 16w + 16), K and V double buffered), with Q and
// dO fragments held in registers: per key tile S = Q·Kᵀ and dPd = dO·Vᵀ, P
// and dS as above, then dQ += dS·K (dS repacked from the accumulators, K by
// ldmatrix.trans as V in the forward). dQ goes straight into dqkv's q columns.
template <int HD, int W>
struct DqCfg {
  static constexpr int BR = 16 * W, BC = 64, LDS = HD + 8, NT = 32 * W;
  static constexpr size_t smem_bytes = static_cast<size_t>(2 * BR + 4 * BC) * LDS * sizeof(Tb);
};

template <int HD, int W>
__global__ void __launch_bounds__(32 * W)
    backward_dq_flash(const Tb* __restrict__ qkv, const Tb* __restrict__ dout, const float* __restrict__ lse,
                      const float* __restrict__ Dv, FlashArgs a, float* __restrict__ dqkv) {
  using Cfg = DqCfg<HD, W>;
  constexpr int BR = Cfg::BR, BC = Cfg::BC, LDS = Cfg::LDS, NT = Cfg::NT;
  static_assert(BC == 64, "two 32-key ballots per tile");
  extern __shared__ uint4 smem_u4[];
  Tb* sQ = reinterpret_cast<Tb*>(smem_u4);
  Tb* sO = sQ + BR * LDS;  // dO
  Tb* sK = sO + BR * LDS;
  Tb* sV = sK + 2 * BC * LDS;
  const int T = a.T, b = blockIdx.z, h = blockIdx.y;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;  // heavy tiles first
  const int C = a.n_head * HD;
  const int64_t ld = 3 * static_cast<int64_t>(C), bh = int64_t{b} * a.n_head + h;
  const Tb* gQ = qkv + int64_t{b} * T * ld + h * HD;
  const Tb* gK = gQ + C;
  const Tb* gV = gQ + 2 * C;
  const Tb* gO = dout + int64_t{b} * T * C + h * HD;
  const int kv_end = min(q0 + BR, T);
  const int n_tiles = (kv_end + BC - 1) / BC;
  const float scale_log2 = a.scale * kLog2e, keep = a.p > 0.f ? 1.f / (1.f - a.p) : 1.f;

  load_rows_async<Tb, HD, NT, BR>(sQ, gQ, ld, q0, T);
  load_rows_async<Tb, HD, NT, BR>(sO, gO, C, q0, T);
  load_rows_async<Tb, HD, NT, BC>(sK, gK, ld, 0, kv_end);
  load_rows_async<Tb, HD, NT, BC>(sV, gV, ld, 0, kv_end);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
  const int row_lo = q0 + warp * 16 + g;
  float L[2], Dr[2];  // log2-unit LSE and D of this thread's rows row_lo, row_lo + 8
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = row_lo + 8 * r;
    L[r] = t < T ? lse[bh * T + t] * kLog2e : 0.f;
    Dr[r] = t < T ? Dv[bh * T + t] : 0.f;
  }
  uint32_t qf[HD / 16][4], of[HD / 16][4];
  float dq[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int it = 0; it < n_tiles; ++it) {
    const int st = it & 1;
    const int kv0 = it * BC;
    const uint32_t seen_lo = __ballot_sync(0xffffffffu, key_visible(a, b, kv0 + lane));
    const uint32_t seen_hi = __ballot_sync(0xffffffffu, key_visible(a, b, kv0 + 32 + lane));
    if (it + 1 < n_tiles) {
      load_rows_async<Tb, HD, NT, BC>(sK + (st ^ 1) * BC * LDS, gK, ld, (it + 1) * BC, kv_end);
      load_rows_async<Tb, HD, NT, BC>(sV + (st ^ 1) * BC * LDS, gV, ld, (it + 1) * BC, kv_end);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        const int off = (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + kk * 16 + (lane / 16) * 8;
        ldmatrix_x4(qf[kk], sQ + off);
        ldmatrix_x4(of[kk], sO + off);
      }
    }
    const Tb* tK = sK + st * BC * LDS;
    const Tb* tV = sV + st * BC * LDS;
    float s[BC / 8][4], dp[BC / 8][4];
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < BC / 16; ++np) {
        const int off = (np * 16 + (lane % 8) + (lane / 16) * 8) * LDS + kk * 16 + ((lane / 8) % 2) * 8;
        uint32_t kb[4], vb[4];
        ldmatrix_x4(kb, tK + off);
        ldmatrix_x4(vb, tV + off);
        mma16816<Tb>(s[2 * np], qf[kk], kb[0], kb[1]);
        mma16816<Tb>(s[2 * np + 1], qf[kk], kb[2], kb[3]);
        mma16816<Tb>(dp[2 * np], of[kk], vb[0], vb[1]);  // dPd = dO·Vᵀ
        mma16816<Tb>(dp[2 * np + 1], of[kk], vb[2], vb[3]);
      }
    }
    // dS (into s).
#pragma unroll
    for (int n = 0; n < BC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = n * 8 + 2 * c4 + (e & 1), r = e >> 1, row = row_lo + 8 * r;
        const bool key_ok = ((j < 32 ? seen_lo >> j : seen_hi >> (j - 32)) & 1u) != 0;
        const bool seen = row < T && kv0 + j <= row && key_ok;
        const float P = seen ? exp2f(s[n][e] * scale_log2 - L[r]) : 0.f;
        const bool kept = a.p <= 0.f ||
                          dropout_uniform(a.key, uint64_t(bh * T + row) * uint64_t(T) + uint64_t(kv0 + j)) >= a.p;
        s[n][e] = P * ((kept ? dp[n][e] * keep : 0.f) - Dr[r]) * a.scale;
      }
    // dQ += dS·K: A = dS from the accumulators, B[k = key][n = dim] = K rows by ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      const uint32_t sa[4] = {Elem<Tb>::pack2(s[2 * kk][0], s[2 * kk][1]), Elem<Tb>::pack2(s[2 * kk][2], s[2 * kk][3]),
                              Elem<Tb>::pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              Elem<Tb>::pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < HD / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4_trans(kb, tK + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LDS + np * 16 + (lane / 16) * 8);
        mma16816<Tb>(dq[2 * np], sa, kb[0], kb[1]);
        mma16816<Tb>(dq[2 * np + 1], sa, kb[2], kb[3]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = row_lo + 8 * r;
    if (t >= T) continue;
    float* row = dqkv + (int64_t{b} * T + t) * ld + h * HD;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n)
      *reinterpret_cast<float2*>(row + n * 8 + 2 * c4) = make_float2(dq[n][2 * r], dq[n][2 * r + 1]);
  }
}

using FwdCfg = MmaCfg<Tb, kHeadDim, kWarps>;
using BackCfg = BwdCfg<kHeadDim, kWarps>;
using DqBackCfg = DqCfg<kHeadDim, kWarps>;
// These fit the 48 KiB every device gives without an opt-in.
static_assert(FwdCfg::smem_bytes <= 48 * 1024 && BackCfg::smem_bytes <= 48 * 1024);

FlashArgs flash_args(const TrainAttentionArgs& a) {
  return FlashArgs{static_cast<int>(a.seq), static_cast<int>(a.n_head), a.scale, a.attn_p, a.dropout_key,
                   a.key_mask, a.key_mask_stride};
}

void check_flash_dims(const TrainAttentionArgs& a) {
  check_train_attention_dims(a);
  if (a.head_dim != kHeadDim) fail_bad_value("attention (training, flash): head size must be 64, got", a.head_dim);
}

}  // namespace

bool train_attention_flash(int64_t head_dim) {
  const char* v = std::getenv("GPT2Q_TRAIN_ATTENTION");
  const std::string_view want = v ? v : "";
  return head_dim == kHeadDim && want != "batched" && want != "rows";
}

void attention_forward_train_flash(const TrainAttentionArgs& a, const float* qkv, float* lse, float* out,
                                   cudaStream_t stream) {
  if (a.batch == 0 || a.seq == 0 || a.n_head == 0) return;
  check_flash_dims(a);
  const int64_t n = a.batch * a.seq * 3 * a.n_head * kHeadDim;
  DeviceBuffer qkv16(static_cast<size_t>(n) * sizeof(Tb));
  to_bf16<<<elementwise_blocks(n / 4), kElementwiseThreads, 0, stream>>>(qkv, n, qkv16.get<Tb>());
  check_launch("attention (training, flash): bf16 operands kernel");
  const dim3 grid(static_cast<unsigned>((a.seq + FwdCfg::BR - 1) / FwdCfg::BR), static_cast<unsigned>(a.n_head),
                  static_cast<unsigned>(a.batch));
  forward_flash<kHeadDim, kWarps>
      <<<grid, FwdCfg::NT, FwdCfg::smem_bytes, stream>>>(qkv16.get<Tb>(), flash_args(a), out, lse);
  check_launch("attention forward (training, flash) kernel");
}

void attention_backward_flash(const TrainAttentionArgs& a, const float* qkv, const float* lse, const float* out,
                              const float* dout, float* dqkv, cudaStream_t stream) {
  if (a.batch == 0 || a.seq == 0 || a.n_head == 0) return;
  check_flash_dims(a);
  // The dQ kernel's two stages of K and V beside Q and dO take more than the
  // default 48 KiB (55 KiB; every GPU CUDA 13 supports opts in to 99 KiB+).
  static const bool opted_in = [] {
    check_cuda(cudaFuncSetAttribute(backward_dq_flash<kHeadDim, kWarps>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(DqBackCfg::smem_bytes)),
               "attention backward (training, flash): shared memory opt-in");
    return true;
  }();
  (void)opted_in;
  const int64_t rows = a.batch * a.seq, C = a.n_head * kHeadDim, n = rows * 3 * C;
  DeviceBuffer qkv16(static_cast<size_t>(n) * sizeof(Tb)), dout16(static_cast<size_t>(rows * C) * sizeof(Tb)),
      D(static_cast<size_t>(rows * a.n_head) * sizeof(float));
  to_bf16<<<elementwise_blocks(n / 4), kElementwiseThreads, 0, stream>>>(qkv, n, qkv16.get<Tb>());
  check_launch("attention (training, flash): bf16 operands kernel");
  const int64_t warps = rows * a.n_head;
  backward_prepare<<<static_cast<unsigned>((warps * 32 + 255) / 256), 256, 0, stream>>>(
      dout, out, rows, static_cast<int>(a.n_head), static_cast<int>(a.seq), dout16.get<Tb>(), D.get<float>());
  check_launch("attention backward (training, flash): dO · O kernel");
  const FlashArgs fa = flash_args(a);
  const dim3 grid_kv(static_cast<unsigned>((a.seq + BackCfg::BC - 1) / BackCfg::BC), static_cast<unsigned>(a.n_head),
                     static_cast<unsigned>(a.batch));
  backward_dkv_flash<kHeadDim, kWarps><<<grid_kv, BackCfg::NT, BackCfg::smem_bytes, stream>>>(
      qkv16.get<Tb>(), dout16.get<Tb>(), lse, D.get<float>(), fa, dqkv);
  check_launch("attention backward (training, flash): dK, dV kernel");
  const dim3 grid_q(static_cast<unsigned>((a.seq + DqBackCfg::BR - 1) / DqBackCfg::BR),
                    static_cast<unsigned>(a.n_head), static_cast<unsigned>(a.batch));
  backward_dq_flash<kHeadDim, kWarps><<<grid_q, DqBackCfg::NT, DqBackCfg::smem_bytes, stream>>>(
      qkv16.get<Tb>(), dout16.get<Tb>(), lse, D.get<float>(), fa, dqkv);
  check_launch("attention backward (training, flash): dQ kernel");
}

}  // namespace gpt2q::cuda
