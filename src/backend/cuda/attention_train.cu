// The attention of the training pass on CUDA (attention_train.h): the
// scalar reference's arithmetic (cpu::reference::attention_forward_train /
// attention_backward: double sums, the probabilities kept [B, H, T, T]),
// written for correctness first: one block per query row (forward, and the
// query side of the backward) or per key row (the key and value side), each
// sum in the reference's order, no atomics (deterministic). It materialises
// the T x T probabilities as the CPU trainer does; a flash-style kernel
// that recomputes them is the next step (docs/training.md).
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "backend/cuda/attention_train.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/dropout.cuh"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

using backend::TrainAttentionArgs;

constexpr int kThreads = 128;

struct Dims {
  int64_t T, hd, C;
};
__device__ __forceinline__ Dims dims(const TrainAttentionArgs& a) {
  return {a.seq, a.head_dim, a.n_head * a.head_dim};
}
// qkv [B, T, 3C]: part 0 q, 1 k, 2 v.
__device__ __forceinline__ int64_t at(const TrainAttentionArgs& a, int64_t b, int64_t t, int64_t part, int64_t h) {
  const Dims d = dims(a);
  return (b * d.T + t) * 3 * d.C + part * d.C + h * d.hd;
}
__device__ __forceinline__ bool valid_key(const TrainAttentionArgs& a, int64_t b, int64_t j) {
  return !a.key_mask || a.key_mask[b * a.key_mask_stride + j];
}
// cpu::reference's dropped(): the probability after dropout (none above the
// diagonal), in double.
__device__ __forceinline__ double dropped(const TrainAttentionArgs& a, int64_t b, int64_t h, int64_t i, int64_t j,
                                          double v) {
  if (a.attn_p <= 0.0f || j > i) return v;
  const uint64_t index = static_cast<uint64_t>(((b * a.n_head + h) * a.seq + i) * a.seq + j);
  const float scale = 1.0f / (1.0f - a.attn_p);  // cpu::dropout_scale
  return dropout_uniform(a.dropout_key, index) >= a.attn_p ? v * scale : 0.0;
}

// Block (i, h, b): row i of head h. sh: T doubles.
__global__ void __launch_bounds__(kThreads)
    forward_rows(const TrainAttentionArgs a, const float* qkv, float* probs, float* dropped_probs, float* out) {
  extern __shared__ double sh[];
  __shared__ double scratch[32];
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Dims d = dims(a);
  const float* q = qkv + at(a, b, i, 0, h);
  double mx = -static_cast<double>(INFINITY), valid = 0.0;
  for (int64_t j = threadIdx.x; j < d.T; j += blockDim.x) {
    double s = -static_cast<double>(INFINITY);
    if (j <= i && valid_key(a, b, j)) {
      const float* k = qkv + at(a, b, j, 1, h);
      double dot = 0.0;
      for (int64_t e = 0; e < d.hd; ++e) dot += static_cast<double>(q[e]) * k[e];
      s = dot * a.scale;
      mx = fmax(mx, s);
      valid += 1.0;
    }
    sh[j] = s;
  }
  mx = block_max(mx, scratch, -static_cast<double>(INFINITY));
  const bool any = block_sum(valid, scratch) > 0.0;
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < d.T; j += blockDim.x) {
    const double p = any ? (sh[j] == -static_cast<double>(INFINITY) ? 0.0 : exp(sh[j] - mx)) : 1.0;
    sh[j] = p;
    sum += p;
  }
  sum = block_sum(sum, scratch);
  const int64_t row = ((b * a.n_head + h) * d.T + i) * d.T;
  for (int64_t j = threadIdx.x; j < d.T; j += blockDim.x) {
    const double p = sh[j] / sum, pd = dropped(a, b, h, i, j, p);
    probs[row + j] = static_cast<float>(p);
    if (dropped_probs) dropped_probs[row + j] = static_cast<float>(pd);
    sh[j] = pd;
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < d.hd; e += blockDim.x) {
    double s = 0.0;
    for (int64_t j = 0; j < d.T; ++j) s += sh[j] * qkv[at(a, b, j, 2, h) + e];
    out[(b * d.T + i) * d.C + h * d.hd + e] = static_cast<float>(s);
  }
}

// Block (i, h, b): ds[i, :] (to the scratch) and dq of row i. sh: T doubles.
__global__ void __launch_bounds__(kThreads)
    backward_query_rows(const TrainAttentionArgs a, const float* qkv, const float* probs, const float* dout,
                        double* ds_all, float* dqkv) {
  extern __shared__ double sh[];
  __shared__ double dot_shared;
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Dims d = dims(a);
  const float* P = probs + ((b * a.n_head + h) * d.T + i) * d.T;
  const float* dO = dout + (b * d.T + i) * d.C + h * d.hd;
  for (int64_t j = threadIdx.x; j < d.T; j += blockDim.x) {
    const float* v = qkv + at(a, b, j, 2, h);
    double g = 0.0;
    for (int64_t e = 0; e < d.hd; ++e) g += static_cast<double>(dO[e]) * v[e];
    sh[j] = dropped(a, b, h, i, j, g);  // dp
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // In j order, as the reference; and whether row i sees any key.
    double dot = 0.0;
    for (int64_t j = 0; j < d.T; ++j) dot += P[j] * sh[j];
    bool any = false;
    for (int64_t j = 0; j <= i; ++j) any |= valid_key(a, b, j);
    dot_shared = any ? dot : NAN;  // NaN: no key, every ds is 0
  }
  __syncthreads();
  const double dot = dot_shared;
  double* ds = ds_all + ((b * a.n_head + h) * d.T + i) * d.T;
  for (int64_t j = threadIdx.x; j < d.T; j += blockDim.x) {
    const double v = isnan(dot) ? 0.0 : P[j] * (sh[j] - dot) * a.scale;
    sh[j] = v;
    ds[j] = v;
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < d.hd; e += blockDim.x) {
    double s = 0.0;
    for (int64_t j = 0; j < d.T; ++j) s += sh[j] * qkv[at(a, b, j, 1, h) + e];
    dqkv[at(a, b, i, 0, h) + e] = static_cast<float>(s);
  }
}

// Block (j, h, b): dk and dv of key row j, the query rows i in order.
__global__ void __launch_bounds__(kThreads)
    backward_key_rows(const TrainAttentionArgs a, const float* qkv, const float* probs, const float* dout,
                      const double* ds_all, float* dqkv) {
  const int64_t j = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Dims d = dims(a);
  const int64_t head = (b * a.n_head + h) * d.T;
  for (int64_t e = threadIdx.x; e < d.hd; e += blockDim.x) {
    double sk = 0.0, sv = 0.0;
    for (int64_t i = 0; i < d.T; ++i) {
      sk += ds_all[(head + i) * d.T + j] * qkv[at(a, b, i, 0, h) + e];
      sv += dropped(a, b, h, i, j, probs[(head + i) * d.T + j]) * dout[(b * d.T + i) * d.C + h * d.hd + e];
    }
    dqkv[at(a, b, j, 1, h) + e] = static_cast<float>(sk);
    dqkv[at(a, b, j, 2, h) + e] = static_cast<float>(sv);
  }
}

// Dynamic shared memory of a row: T doubles, rounded up to 4 (the compiler
// reads the tail of an unrolled loop over it as 16-byte pairs: memcheck saw a
// read of sh[T] for odd T, device run 9).
size_t row_shared_bytes(int64_t seq) { return static_cast<size_t>((seq + 3) / 4 * 4) * sizeof(double); }

}  // namespace

void check_train_attention_dims(const TrainAttentionArgs& a) {
  if (a.seq > 65535 || a.n_head > 65535 || a.batch > 65535)
    fail_bad_value("attention (training): batch, heads and sequence must each be <= 65535, sequence", a.seq);
  if (row_shared_bytes(a.seq) > 48 * 1024)
    fail_bad_value("attention (training): the probabilities of a row must fit 48 KiB of shared memory, sequence",
                   a.seq);
}

bool train_attention_batched() {
  const char* v = std::getenv("GPT2Q_TRAIN_ATTENTION");
  return !(v && std::string_view(v) == "rows");
}

void attention_forward_train(const TrainAttentionArgs& a, const float* qkv, float* probs, float* dropped, float* out,
                             cudaStream_t stream) {
  if (a.batch == 0 || a.seq == 0 || a.n_head == 0) return;
  check_train_attention_dims(a);
  const dim3 grid(static_cast<unsigned>(a.seq), static_cast<unsigned>(a.n_head), static_cast<unsigned>(a.batch));
  forward_rows<<<grid, kThreads, row_shared_bytes(a.seq), stream>>>(a, qkv, probs, dropped, out);
  check_launch("attention forward (training) kernel");
}

void attention_backward(const TrainAttentionArgs& a, const float* qkv, const float* probs, const float* dout,
                        float* dqkv, cudaStream_t stream) {
  if (a.batch == 0 || a.seq == 0 || a.n_head == 0) return;
  check_train_attention_dims(a);
  const dim3 grid(static_cast<unsigned>(a.seq), static_cast<unsigned>(a.n_head), static_cast<unsigned>(a.batch));
  DeviceBuffer ds(static_cast<size_t>(a.batch * a.n_head * a.seq * a.seq) * sizeof(double));
  backward_query_rows<<<grid, kThreads, row_shared_bytes(a.seq), stream>>>(
      a, qkv, probs, dout, ds.get<double>(), dqkv);
  check_launch("attention backward (queries) kernel");
  backward_key_rows<<<grid, kThreads, 0, stream>>>(a, qkv, probs, dout, ds.get<double>(), dqkv);
  check_launch("attention backward (keys) kernel");
}

}  // namespace gpt2q::cuda
