// The training attention on tensor cores (attention_train.h's batched
// kernels): the per-head products as strided batches of cuBLASLt GEMMs over
// [B·H] heads, and the softmax, its dropout and its backward as row kernels,
// llm.c's first attention (before its cuDNN one). Why cuBLASLt and not a
// flash kernel of our own: it is the well-kept library the house rules
// prefer, its products run at the tensor cores' rate in bf16 (gemm.h's
// fast_bf16, set per thread) and in exact fp32 alike, and the [B, H, T, T]
// probabilities are kept for the backward anyway (the trace's contract); a
// recomputing attention is the next step (docs/training.md).
//
// Semantics are the scalar reference's (cpu::reference attention_forward_train
// / attention_backward): probabilities before and after dropout kept, a row
// with no valid key averages every value (HF's fully masked rows), dropout
// masks from the same counters. The softmax sums run in fp32 (PyTorch's),
// so fp32 results agree with the double reference within ~1e-6 relative.
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/attention_train.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/dropout.cuh"
#include "backend/cuda/gemm.h"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

using backend::TrainAttentionArgs;

constexpr int kRowThreads = 128;

// qkv [B, T, 3, H, hd] <-> part p of it as [B, H, T, hd]: index idx of
// `count` consecutive [B, H, T, hd] buffers is, in a [B, T, parts, H, hd]
// tensor, element heads_index(...) (of part first + idx / (B·H·T·hd)).
__device__ __forceinline__ int64_t heads_index(int64_t idx, int64_t parts, int64_t first, int64_t B, int64_t T,
                                               int64_t H, int64_t hd) {
  const int64_t per = B * H * T * hd, part = idx / per, r = idx % per;
  const int64_t e = r % hd, t = (r / hd) % T, h = (r / (hd * T)) % H, b = r / (hd * T * H);
  return (((b * T + t) * parts + first + part) * H + h) * hd + e;
}

// to_heads: dst (count [B, H, T, hd] buffers) from src; from_heads the reverse.
__global__ void to_heads(const float* src, int64_t parts, int64_t first, int64_t count, int64_t B, int64_t T,
                         int64_t H, int64_t hd, float* dst) {
  const int64_t n = count * B * H * T * hd;
  for (int64_t idx = grid_start(); idx < n; idx += grid_stride())
    dst[idx] = src[heads_index(idx, parts, first, B, T, H, hd)];
}

__global__ void from_heads(const float* src, int64_t parts, int64_t first, int64_t count, int64_t B, int64_t T,
                           int64_t H, int64_t hd, float* dst) {
  const int64_t n = count * B * H * T * hd;
  for (int64_t idx = grid_start(); idx < n; idx += grid_stride())
    dst[heads_index(idx, parts, first, B, T, H, hd)] = src[idx];
}

// The same moves a token row (b, t) per blockIdx.x, four floats a thread
// (blockIdx.y · blockDim.x + threadIdx.x over the row's count·H·hd/4): both
// sides are read and written in runs of a head's hd floats, and the index
// arithmetic is 32-bit divisions by small numbers. heads_index's 64-bit
// divisions per element made the scalar kernels ~15 % of a bf16 training
// step at ~280 GB/s (device run 10's profile).
__global__ void heads_rows(bool to, const float4* src, int parts, int first, int count, int B, int T, int H, int hd4,
                           float4* dst) {
  const int x = static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x);
  const int per_part = H * hd4;
  if (x >= count * per_part) return;
  const int64_t bt = blockIdx.x;
  const int part = x / per_part, rem = x % per_part, h = rem / hd4, e = rem % hd4;
  const int64_t b = bt / T, t = bt % T;
  const int64_t packed = (bt * parts + first + part) * per_part + rem;
  const int64_t heads = (((part * B + b) * H + h) * T + t) * hd4 + e;
  if (to) {
    dst[heads] = src[packed];
  } else {
    dst[packed] = src[heads];
  }
}

void launch_heads(bool to, const float* src, int64_t parts, int64_t first, int64_t count, const TrainAttentionArgs& a,
                  float* dst, cudaStream_t stream) {
  const int64_t n = count * a.batch * a.n_head * a.seq * a.head_dim;
  const bool vec = a.head_dim % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(dst) % 16 == 0 && count * a.n_head * a.head_dim / 4 <= INT32_MAX &&
                   a.batch * a.seq <= INT32_MAX;
  if (vec) {
    const int64_t row4 = count * a.n_head * a.head_dim / 4;
    const dim3 grid(static_cast<unsigned>(a.batch * a.seq),
                    static_cast<unsigned>((row4 + kElementwiseThreads - 1) / kElementwiseThreads));
    heads_rows<<<grid, kElementwiseThreads, 0, stream>>>(
        to, reinterpret_cast<const float4*>(src), static_cast<int>(parts), static_cast<int>(first),
        static_cast<int>(count), static_cast<int>(a.batch), static_cast<int>(a.seq), static_cast<int>(a.n_head),
        static_cast<int>(a.head_dim / 4), reinterpret_cast<float4*>(dst));
  } else if (to) {
    to_heads<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(src, parts, first, count, a.batch, a.seq,
                                                                        a.n_head, a.head_dim, dst);
  } else {
    from_heads<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(src, parts, first, count, a.batch, a.seq,
                                                                          a.n_head, a.head_dim, dst);
  }
  check_launch(to ? "attention: heads split" : "attention: heads merged");
}

__device__ __forceinline__ bool valid_key(const TrainAttentionArgs& a, int64_t b, int64_t j) {
  return !a.key_mask || a.key_mask[b * a.key_mask_stride + j];
}

// Block per row (i, h, b) of probs [B, H, T, T], holding the raw scores q·k:
// the masked, scaled softmax in place, and its dropout into dropped.
__global__ void __launch_bounds__(kRowThreads)
    softmax_rows(const TrainAttentionArgs a, float* probs, float* dropped) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, T = a.seq;
  const int64_t row = ((b * a.n_head + h) * T + i) * T;
  float* p = probs + row;
  float mx = -INFINITY;
  float any = 0.0f;
  for (int64_t j = threadIdx.x; j <= i; j += blockDim.x)
    if (valid_key(a, b, j)) {
      mx = fmaxf(mx, p[j] * a.scale);
      any = 1.0f;
    }
  mx = block_max(mx, scratch, -INFINITY);
  const bool none = block_sum(any, scratch) == 0.0f;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    const float e = none ? 1.0f : (j <= i && valid_key(a, b, j) ? expf(p[j] * a.scale - mx) : 0.0f);
    p[j] = e;
    sum += e;
  }
  sum = block_sum(sum, scratch);
  const float inv = 1.0f / sum;
  const float keep_scale = a.attn_p > 0.0f ? 1.0f / (1.0f - a.attn_p) : 1.0f;
  for (int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    const float v = p[j] * inv;
    p[j] = v;
    if (dropped) {
      const bool kept = j > i || dropout_uniform(a.dropout_key, static_cast<uint64_t>(row + j)) >= a.attn_p;
      dropped[row + j] = j > i ? v : (kept ? v * keep_scale : 0.0f);
    }
  }
}

// Block per row: dp (in place, from dO·Vᵀ) -> ds = P ⊙ (dp' − Σ P·dp') · scale,
// dp' = dp through the dropout mask; 0 for a row that sees no key.
__global__ void __launch_bounds__(kRowThreads)
    softmax_backward_rows(const TrainAttentionArgs a, const float* probs, float* dp) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, T = a.seq;
  const int64_t row = ((b * a.n_head + h) * T + i) * T;
  const float* P = probs + row;
  float* g = dp + row;
  const float keep_scale = a.attn_p > 0.0f ? 1.0f / (1.0f - a.attn_p) : 1.0f;
  float dot = 0.0f, any = 0.0f;
  for (int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    float v = g[j];
    if (a.attn_p > 0.0f && j <= i)
      v = dropout_uniform(a.dropout_key, static_cast<uint64_t>(row + j)) >= a.attn_p ? v * keep_scale : 0.0f;
    g[j] = v;
    dot += P[j] * v;
    if (j <= i && valid_key(a, b, j)) any = 1.0f;
  }
  dot = block_sum(dot, scratch);
  const bool none = block_sum(any, scratch) == 0.0f;
  for (int64_t j = threadIdx.x; j < T; j += blockDim.x) g[j] = none ? 0.0f : P[j] * (g[j] - dot) * a.scale;
}

// The same two kernels with a warp per row, for rows of up to 32·K keys:
// each lane holds its K elements in registers, so a row is read once and
// written once (the block kernels read it three times, with block-wide
// barriers between: ~230 GB/s on the LM's 1024-key rows, most of a bf16 LM
// step; device run 12). Rows are R = (b·H + h)·T + i, four per block.
constexpr int kWarpRows = 4;

template <int K>
__global__ void __launch_bounds__(32 * kWarpRows)
    softmax_rows_warp(const TrainAttentionArgs a, float* probs, float* dropped) {
  const int lane = threadIdx.x % 32;
  const int64_t T = a.seq, R = int64_t{blockIdx.x} * kWarpRows + threadIdx.x / 32;
  if (R >= a.batch * a.n_head * T) return;
  const int64_t i = R % T, b = R / (T * a.n_head), row = R * T;
  float* p = probs + row;
  float v[K];
  float mx = -INFINITY, any = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + 32 * k;
    const bool ok = j <= i && valid_key(a, b, j);
    v[k] = ok ? p[j] * a.scale : -INFINITY;
    if (ok) {
      mx = fmaxf(mx, v[k]);
      any = 1.0f;
    }
  }
  mx = warp_max(mx);
  const bool none = warp_sum(any) == 0.0f;
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + 32 * k;
    v[k] = j >= T ? 0.0f : none ? 1.0f : (v[k] == -INFINITY ? 0.0f : expf(v[k] - mx));
    sum += v[k];
  }
  const float inv = 1.0f / warp_sum(sum);
  const float keep_scale = a.attn_p > 0.0f ? 1.0f / (1.0f - a.attn_p) : 1.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + 32 * k;
    if (j >= T) break;
    const float x = v[k] * inv;
    p[j] = x;
    if (dropped) {
      const bool kept = j > i || dropout_uniform(a.dropout_key, static_cast<uint64_t>(row + j)) >= a.attn_p;
      dropped[row + j] = j > i ? x : (kept ? x * keep_scale : 0.0f);
    }
  }
}

template <int K>
__global__ void __launch_bounds__(32 * kWarpRows)
    softmax_backward_rows_warp(const TrainAttentionArgs a, const float* probs, float* dp) {
  const int lane = threadIdx.x % 32;
  const int64_t T = a.seq, R = int64_t{blockIdx.x} * kWarpRows + threadIdx.x / 32;
  if (R >= a.batch * a.n_head * T) return;
  const int64_t i = R % T, b = R / (T * a.n_head), row = R * T;
  const float* P = probs + row;
  float* g = dp + row;
  const float keep_scale = a.attn_p > 0.0f ? 1.0f / (1.0f - a.attn_p) : 1.0f;
  float gv[K], pv[K];
  float dot = 0.0f, any = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + 32 * k;
    gv[k] = pv[k] = 0.0f;
    if (j >= T) continue;
    float x = g[j];
    if (a.attn_p > 0.0f && j <= i)
      x = dropout_uniform(a.dropout_key, static_cast<uint64_t>(row + j)) >= a.attn_p ? x * keep_scale : 0.0f;
    gv[k] = x;
    pv[k] = P[j];
    dot += pv[k] * x;
    if (j <= i && valid_key(a, b, j)) any = 1.0f;
  }
  dot = warp_sum(dot);
  const bool none = warp_sum(any) == 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t j = lane + 32 * k;
    if (j >= T) break;
    g[j] = none ? 0.0f : pv[k] * (gv[k] - dot) * a.scale;
  }
}

// dropped = dropout(probs) over all [B, H, T, T] (softmax_rows's rule), for
// a backward whose forward did not keep it.
__global__ void dropout_probs(const TrainAttentionArgs a, const float* probs, float* dropped) {
  const int64_t T = a.seq, n = a.batch * a.n_head * T * T;
  const float keep_scale = 1.0f / (1.0f - a.attn_p);
  for (int64_t idx = grid_start(); idx < n; idx += grid_stride()) {
    const int64_t j = idx % T, i = (idx / T) % T;
    const float v = probs[idx];
    dropped[idx] = j > i ? v
                         : (dropout_uniform(a.dropout_key, static_cast<uint64_t>(idx)) >= a.attn_p ? v * keep_scale
                                                                                                   : 0.0f);
  }
}

// One strided batch of B·H products (gemm.h), fp32 operands: exact or bf16
// per the thread's fp32_products() (gemm applies it).
struct HeadProduct {
  const float* x;
  bool x_in_rows;
  int64_t rows, in, out;
  const float* w;
  bool w_out_in;
  float* y;
  bool accumulate;
};

void heads_gemm(const TrainAttentionArgs& a, const HeadProduct& hp, cudaStream_t stream) {
  GemmCall g;
  g.x = hp.x;
  g.x_in_rows = hp.x_in_rows;
  g.w = hp.w;
  g.w_out_in = hp.w_out_in;
  g.rows = hp.rows;
  g.in = hp.in;
  g.out = hp.out;
  g.y = hp.y;
  g.accumulate = hp.accumulate;
  g.batch = a.batch * a.n_head;
  g.batch_stride_x = hp.rows * hp.in;
  g.batch_stride_w = hp.in * hp.out;
  g.batch_stride_y = hp.rows * hp.out;
  gemm(g, stream);
}

// Threads per row block: a warp for rows of up to 256 keys (a 128-token
// classifier's rows are 512 bytes: four warps idled on them, and the
// softmax ran at ~230 GB/s in device run 12's profile), else kRowThreads.
unsigned row_threads(const TrainAttentionArgs& a) { return a.seq <= 256 ? 32u : static_cast<unsigned>(kRowThreads); }

dim3 row_grid(const TrainAttentionArgs& a) {
  return dim3(static_cast<unsigned>(a.seq), static_cast<unsigned>(a.n_head), static_cast<unsigned>(a.batch));
}

// f(std::integral_constant<int, K>) with the fewest keys per lane K that
// covers T keys; false (f not called) past 1024 keys.
template <typename F>
bool with_keys_per_lane(int64_t T, F&& f) {
  if (T <= 32) f(std::integral_constant<int, 1>{});
  else if (T <= 64) f(std::integral_constant<int, 2>{});
  else if (T <= 128) f(std::integral_constant<int, 4>{});
  else if (T <= 256) f(std::integral_constant<int, 8>{});
  else if (T <= 512) f(std::integral_constant<int, 16>{});
  else if (T <= 1024) f(std::integral_constant<int, 32>{});
  else return false;
  return true;
}

unsigned warp_row_blocks(const TrainAttentionArgs& a) {
  return static_cast<unsigned>((a.batch * a.n_head * a.seq + kWarpRows - 1) / kWarpRows);
}

// The softmax and its dropout over every row: the warp kernels up to 1024
// keys, the block kernels beyond.
void launch_softmax(const TrainAttentionArgs& a, float* probs, float* dropped, cudaStream_t stream) {
  const bool warp = with_keys_per_lane(a.seq, [&](auto k) {
    softmax_rows_warp<decltype(k)::value><<<warp_row_blocks(a), 32 * kWarpRows, 0, stream>>>(a, probs, dropped);
  });
  if (!warp) softmax_rows<<<row_grid(a), row_threads(a), 0, stream>>>(a, probs, dropped);
  check_launch("attention softmax (training) kernel");
}

void launch_softmax_backward(const TrainAttentionArgs& a, const float* probs, float* dp, cudaStream_t stream) {
  const bool warp = with_keys_per_lane(a.seq, [&](auto k) {
    softmax_backward_rows_warp<decltype(k)::value><<<warp_row_blocks(a), 32 * kWarpRows, 0, stream>>>(a, probs, dp);
  });
  if (!warp) softmax_backward_rows<<<row_grid(a), row_threads(a), 0, stream>>>(a, probs, dp);
  check_launch("attention softmax backward (training) kernel");
}

}  // namespace

void attention_forward_train_batched(const TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped,
                                     float* out, cudaStream_t stream) {
  if (a.batch == 0 || a.seq == 0 || a.n_head == 0) return;
  check_train_attention_dims(a);
  const int64_t T = a.seq, hd = a.head_dim, per = a.batch * a.n_head * T * hd;
  DeviceBuffer heads(static_cast<size_t>(4 * per) * sizeof(float));  // q, k, v, then the output
  float *q = heads.get<float>(), *k = q + per, *v = k + per, *o = v + per;
  // Dropout without a kept `dropped`: the dropped probabilities in a scratch.
  const bool drop = a.attn_p > 0.0f;
  DeviceBuffer scratch(drop && !dropped ? static_cast<size_t>(a.batch * a.n_head * T * T) * sizeof(float) : 0);
  float* pd = !drop ? probs : dropped ? dropped : scratch.get<float>();
  launch_heads(true, qkv, 3, 0, 3, a, q, stream);
  heads_gemm(a, {q, false, T, hd, T, k, true, probs, false}, stream);  // S = Q·Kᵀ
  launch_softmax(a, probs, drop ? pd : nullptr, stream);
  heads_gemm(a, {pd, false, T, T, hd, v, false, o, false}, stream);  // O = Pd·V
  launch_heads(false, o, 1, 0, 1, a, out, stream);
}

void attention_backward_batched(const TrainAttentionArgs& a, const float* qkv, const float* probs,
                                const float* dropped, const float* dout, float* dqkv, cudaStream_t stream) {
  if (a.batch == 0 || a.seq == 0 || a.n_head == 0) return;
  check_train_attention_dims(a);
  const int64_t T = a.seq, hd = a.head_dim, per = a.batch * a.n_head * T * hd;
  DeviceBuffer heads(static_cast<size_t>(7 * per) * sizeof(float));
  float *q = heads.get<float>(), *k = q + per, *v = k + per, *dq = v + per, *dk = dq + per, *dv = dk + per,
        *dO = dv + per;
  DeviceBuffer ds_buffer(static_cast<size_t>(a.batch * a.n_head * T * T) * sizeof(float));
  float* ds = ds_buffer.get<float>();
  launch_heads(true, qkv, 3, 0, 3, a, q, stream);
  launch_heads(true, dout, 1, 0, 1, a, dO, stream);
  const float* pd = probs;
  if (a.attn_p > 0.0f && dropped) {
    pd = dropped;
  } else if (a.attn_p > 0.0f) {  // regenerated into ds, which dPd overwrites after dV has read it
    const int64_t n = a.batch * a.n_head * T * T;
    dropout_probs<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(a, probs, ds);
    check_launch("attention dropout (training) kernel");
    pd = ds;
  }
  heads_gemm(a, {pd, true, T, T, hd, dO, false, dv, false}, stream);  // dV = Pdᵀ·dO
  heads_gemm(a, {dO, false, T, hd, T, v, true, ds, false}, stream);   // dPd = dO·Vᵀ
  launch_softmax_backward(a, probs, ds, stream);
  heads_gemm(a, {ds, false, T, T, hd, k, false, dq, false}, stream);  // dQ = dS·K
  heads_gemm(a, {ds, true, T, T, hd, q, false, dk, false}, stream);   // dK = dSᵀ·Q
  launch_heads(false, dq, 3, 0, 3, a, dqkv, stream);                  // dq, dk, dv are consecutive
}

}  // namespace gpt2q::cuda
