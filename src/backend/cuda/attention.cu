// Causal self-attention, straightforwardly: one thread block per (query,
// head, batch). The block walks the keys in tiles of kThreads, one key per
// thread, with an online softmax (running max and sum, rescaling the
// accumulated output when the max grows), so no score matrix is stored and
// any kv_len fits. Scores, weights, the running sum and the output are
// doubles, as in the scalar reference, so the result matches it to fp32
// rounding. The same kernel serves F16 / BF16 tensors (loaded to fp32); the
// fast 16-bit path is the tensor-core flash kernel (flash_attention.cu).
#include <climits>
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

constexpr int kThreads = 128;
// head_dim bound from shared memory: the output accumulator (double) and q
// (float) per dimension plus the tile's weights stay under the default
// 48 KiB per block.
constexpr int64_t kMaxHeadDim = 3072;

// Row r of head h of batch b in a view of T elements (the view's strides are
// in elements; its pointer is typed float* for the CPU).
template <typename T>
__device__ inline T* row_of(const HeadView& v, int64_t b, int64_t h, int64_t r) {
  return reinterpret_cast<T*>(v.data) + b * v.batch_stride + h * v.head_stride + r * v.row_stride;
}

template <typename T>
__global__ void attention_kernel(AttentionArgs a) {
  extern __shared__ double smem[];
  double* acc = smem;                                    // [head_dim]
  double* p = acc + a.head_dim;                          // [kThreads] weights of the current tile
  float* q = reinterpret_cast<float*>(p + kThreads);     // [head_dim]
  __shared__ double scratch[32];

  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, hd = a.head_dim;
  const int64_t past = a.kv_len - a.q_len;
  const int64_t visible_end = past + i + 1;  // causality: keys j < visible_end
  const uint8_t* mask = a.key_mask ? a.key_mask + b * a.key_mask_stride : nullptr;

  const T* qr = row_of<T>(a.q, b, h, i);
  for (int64_t d = threadIdx.x; d < hd; d += kThreads) {
    q[d] = to_float(qr[d]);
    acc[d] = 0.0;
  }
  // A query that sees no key at all (only with a mask) averages all kv_len
  // values, as the reference and HF's eager path do: every key then gets
  // score 0.
  int sees_a_key = 1;
  if (mask) {
    int any = 0;
    for (int64_t j = threadIdx.x; j < visible_end; j += kThreads) any |= mask[j] != 0;
    sees_a_key = __syncthreads_or(any);
  }
  const int64_t end = sees_a_key ? visible_end : a.kv_len;
  __syncthreads();  // q and acc are ready

  double running_max = -INFINITY, running_sum = 0.0;
  for (int64_t j0 = 0; j0 < end; j0 += kThreads) {
    const int64_t j = j0 + threadIdx.x;
    double s = -INFINITY;
    if (j < end && (!sees_a_key || !mask || mask[j])) {
      s = 0.0;
      if (sees_a_key) {
        const T* kr = row_of<T>(a.k, b, h, j);
        for (int64_t d = 0; d < hd; ++d) s += static_cast<double>(q[d]) * to_float(kr[d]);
        s *= a.scale;
      }
    }
    const double new_max = fmax(running_max, block_max(s, scratch, static_cast<double>(-INFINITY)));
    if (new_max == -INFINITY) continue;  // nothing visible yet (uniform across the block)
    const double w = s == -INFINITY ? 0.0 : exp(s - new_max);
    p[threadIdx.x] = w;
    const double tile_sum = block_sum(w, scratch);  // its barriers also publish p
    const double rescale = running_max == -INFINITY ? 0.0 : exp(running_max - new_max);
    running_sum = running_sum * rescale + tile_sum;
    running_max = new_max;
    const int64_t tile = end - j0 < kThreads ? end - j0 : kThreads;
    for (int64_t d = threadIdx.x; d < hd; d += kThreads) {
      double o = acc[d] * rescale;
      for (int64_t t = 0; t < tile; ++t) o += p[t] * to_float(row_of<T>(a.v, b, h, j0 + t)[d]);
      acc[d] = o;
    }
    __syncthreads();  // p is rewritten by the next tile
  }
  T* out = row_of<T>(a.out, b, h, i);
  for (int64_t d = threadIdx.x; d < hd; d += kThreads) out[d] = from_float<T>(static_cast<float>(acc[d] / running_sum));
}

template <typename T>
__global__ void store_kv_kernel(const T* qkv, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim,
                                T* cache_k, T* cache_v, int64_t capacity, int64_t past) {
  const int64_t C = n_head * head_dim, n = batch * seq * C;
  for (int64_t idx = grid_start(); idx < n; idx += grid_stride()) {
    const int64_t c = idx % C, bt = idx / C, t = bt % seq, b = bt / seq;
    const int64_t h = c / head_dim, d = c % head_dim;
    const T* row = qkv + bt * 3 * C;
    const int64_t at = ((b * n_head + h) * capacity + past + t) * head_dim + d;
    cache_k[at] = row[C + c];
    cache_v[at] = row[2 * C + c];
  }
}

}  // namespace

void causal_attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.n_head == 0 || a.q_len == 0 || a.head_dim == 0) return;
  if (a.head_dim > kMaxHeadDim) fail_too_large("attention head_dim", a.head_dim, kMaxHeadDim);
  if (a.q_len > INT_MAX) fail_too_large("attention query count", a.q_len, INT_MAX);
  if (a.n_head > 65535) fail_too_large("attention head count", a.n_head, 65535);
  if (a.batch > 65535) fail_too_large("attention batch", a.batch, 65535);
  const dim3 grid(static_cast<unsigned>(a.q_len), static_cast<unsigned>(a.n_head), static_cast<unsigned>(a.batch));
  const size_t shared = a.head_dim * (sizeof(double) + sizeof(float)) + kThreads * sizeof(double);
  with_float_type(
      a.dtype, [&](auto t) { attention_kernel<decltype(t)><<<grid, kThreads, shared, stream>>>(a); },
      [&] { fail_bad_value("attention: unsupported dtype", static_cast<int64_t>(a.dtype)); });
  check_launch("attention kernel");
}

void store_kv(const void* qkv, DType dtype, int64_t batch, int64_t seq, int64_t n_head, int64_t head_dim,
              void* cache_k, void* cache_v, int64_t capacity, int64_t past, cudaStream_t stream) {
  const int64_t n = batch * seq * n_head * head_dim;
  if (n <= 0) return;
  with_float_type(
      dtype,
      [&](auto t) {
        using T = decltype(t);
        store_kv_kernel<T><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
            static_cast<const T*>(qkv), batch, seq, n_head, head_dim, static_cast<T*>(cache_k),
            static_cast<T*>(cache_v), capacity, past);
      },
      [&] { fail_bad_value("store_kv: unsupported dtype", static_cast<int64_t>(dtype)); });
  check_launch("store_kv kernel");
}

}  // namespace gpt2q::cuda
