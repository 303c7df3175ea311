// train_kernels.h: elementwise kernels of the training pass (dropout, GELU
// backward, AdamW), grid-stride loops over any n.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/dropout.cuh"
#include "backend/cuda/gemm.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/train_kernels.h"
#include "core/device_memory.h"

namespace gpt2q::cuda {

namespace {

__global__ void dropout_kernel(float* x, int64_t n, float p, float scale, uint64_t key, uint64_t first) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    // cpu::dropout_uniform: the top 24 bits as a multiple of 2^-24 (exact).
    const float u = dropout_uniform(key, first + static_cast<uint64_t>(i));
    x[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f;
  }
}

// The derivatives in double (the CPU reference's formulas), four elements a
// thread where n and the pointers allow (16-byte loads and stores).
__device__ __forceinline__ float gelu_new_grad(float x, float dy) {
  const double k = 0.79788456080286535588;  // sqrt(2 / pi)
  const double v = x;
  const double t = tanh(k * (v + 0.044715 * v * v * v));
  const double grad = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
  return static_cast<float>(dy * grad);
}

__device__ __forceinline__ float gelu_erf_grad(float x, float dy) {
  const double v = x;
  const double grad = 0.5 * erfc(-v * 0.70710678118654752440) + v * exp(-0.5 * v * v) * 0.39894228040143267794;
  return static_cast<float>(dy * grad);
}

template <bool kErf>
__global__ void gelu_backward_kernel(const float* x, float* dy, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride())
    dy[i] = kErf ? gelu_erf_grad(x[i], dy[i]) : gelu_new_grad(x[i], dy[i]);
}

template <bool kErf>
__global__ void gelu_backward_x4_kernel(const float4* x, float4* dy, int64_t n4) {
  for (int64_t i = grid_start(); i < n4; i += grid_stride()) {
    const float4 v = x[i];
    float4 g = dy[i];
    g.x = kErf ? gelu_erf_grad(v.x, g.x) : gelu_new_grad(v.x, g.x);
    g.y = kErf ? gelu_erf_grad(v.y, g.y) : gelu_new_grad(v.y, g.y);
    g.z = kErf ? gelu_erf_grad(v.z, g.z) : gelu_new_grad(v.z, g.z);
    g.w = kErf ? gelu_erf_grad(v.w, g.w) : gelu_new_grad(v.w, g.w);
    dy[i] = g;
  }
}

template <bool kErf>
void launch_gelu_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(dy) % 16 == 0) {
    gelu_backward_x4_kernel<kErf><<<elementwise_blocks(n / 4), kElementwiseThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(x), reinterpret_cast<float4*>(dy), n / 4);
  } else {
    gelu_backward_kernel<kErf><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, dy, n);
  }
  check_launch(kErf ? "gelu_erf_backward kernel" : "gelu_new_backward kernel");
}

__global__ void adamw_kernel(const backend::AdamWArgs a) {
  const backend::AdamWStep k = a.k;
  for (int64_t i = grid_start(); i < a.n; i += grid_stride()) {
    float p = a.param[i];
    if (k.decay) p = __fmul_rn(p, k.keep);
    const float g = a.grad[i], m0 = a.exp_avg[i], v0 = a.exp_avg_sq[i];
    const float m = __fmaf_rn(k.w1, __fsub_rn(g, m0), m0);
    const float v = __fmaf_rn(__fmul_rn(k.w2, g), g, __fmul_rn(v0, k.b2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.bc2_sqrt), k.eps);
    a.param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(k.neg_step_size, m), denom));
    a.exp_avg[i] = m;
    a.exp_avg_sq[i] = v;
  }
}

// LayerNorm backward and the bias gradients in three passes, each parallel
// over the whole tensor (device run 10's profile: the former block-per-rows
// kernel, adding its partial column sums into global memory row by row, and
// a column pass of one thread per column were ~13 % of a bf16 step, and the
// bias sums ~12 %):
//   1. a warp per row: the row's statistics and dx (double, as the CPU);
//   2. a block per (32 columns, chunk of rows): the chunk's column sums of
//      dy·x̂ and dy, in double, in a fixed order;
//   3. a thread per column: the chunks' sums added in order.
// Every order is a function of the shape only, so results never depend on
// the device or the launch.
constexpr int kLnThreads = 256;
constexpr int kWarpsPerBlock = kLnThreads / 32;
constexpr int kColumnTile = 32;

__global__ void __launch_bounds__(kLnThreads)
    layer_norm_backward_dx(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                           float* dx, double* stats) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  const float* g = dy + r * cols;
  double sum = 0.0;
  for (int64_t c = lane; c < cols; c += 32) sum += xr[c];
  const double mean = warp_sum(sum) / static_cast<double>(cols);
  double sq = 0.0;
  for (int64_t c = lane; c < cols; c += 32) {
    const double d = xr[c] - mean;
    sq += d * d;
  }
  const double rstd = 1.0 / sqrt(warp_sum(sq) / static_cast<double>(cols) + static_cast<double>(eps));
  double mg = 0.0, mgx = 0.0;
  for (int64_t c = lane; c < cols; c += 32) {
    const double xhat = (xr[c] - mean) * rstd, gw = static_cast<double>(g[c]) * w[c];
    mg += gw;
    mgx += gw * xhat;
  }
  mg = warp_sum(mg) / static_cast<double>(cols);
  mgx = warp_sum(mgx) / static_cast<double>(cols);
  float* dxr = dx + r * cols;
  for (int64_t c = lane; c < cols; c += 32) {
    const double xhat = (xr[c] - mean) * rstd;
    dxr[c] += static_cast<float>(rstd * (static_cast<double>(g[c]) * w[c] - mg - xhat * mgx));
  }
  if (lane == 0) {
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
  }
}

// Block (blockIdx.x: columns, blockIdx.y: chunk of chunk_rows rows), threads
// (column, 8 row lanes): partial[chunk][c] = Σ dy (and, with x,
// partial[chunks + chunk][c] = Σ dy·x̂), in double.
__global__ void __launch_bounds__(kLnThreads)
    column_chunk_sums(const float* dy, const float* x, const double* stats, int64_t rows, int64_t cols,
                      int64_t chunk_rows, double* partial) {
  __shared__ double sb[kWarpsPerBlock][kColumnTile], sw[kWarpsPerBlock][kColumnTile];
  const int tx = threadIdx.x % kColumnTile, ty = threadIdx.x / kColumnTile;
  const int64_t c = int64_t{blockIdx.x} * kColumnTile + tx, chunk = blockIdx.y;
  const int64_t r0 = chunk * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  double b = 0.0, wsum = 0.0;
  if (c < cols) {
    for (int64_t r = r0 + ty; r < r1; r += kWarpsPerBlock) {
      const double g = dy[r * cols + c];
      b += g;
      if (x) wsum += g * ((x[r * cols + c] - stats[2 * r]) * stats[2 * r + 1]);
    }
  }
  sb[ty][tx] = b;
  sw[ty][tx] = wsum;
  __syncthreads();
  if (ty != 0 || c >= cols) return;
  for (int k = 1; k < kWarpsPerBlock; ++k) {
    b += sb[k][tx];
    wsum += sw[k][tx];
  }
  const int64_t chunks = gridDim.y;
  partial[chunk * cols + c] = b;
  if (x) partial[(chunks + chunk) * cols + c] = wsum;
}

// out[c] += Σ_k partial[k][c], and, with out2, out2[c] += Σ_k
// partial[chunks + k][c]: a block per 32 columns, its 8 row lanes taking
// k = lane, lane + 8, ..., then the lanes' sums in lane order (a thread per
// column summing every chunk in turn ran at ~25 GB/s: device run 12).
__global__ void __launch_bounds__(kLnThreads)
    add_chunk_sums(const double* partial, int64_t chunks, int64_t cols, float* out, float* out2) {
  __shared__ double s1[kWarpsPerBlock][kColumnTile], s2[kWarpsPerBlock][kColumnTile];
  const int tx = threadIdx.x % kColumnTile, ty = threadIdx.x / kColumnTile;
  const int64_t c = int64_t{blockIdx.x} * kColumnTile + tx;
  double a = 0.0, b = 0.0;
  if (c < cols) {
    for (int64_t k = ty; k < chunks; k += kWarpsPerBlock) {
      a += partial[k * cols + c];
      if (out2) b += partial[(chunks + k) * cols + c];
    }
  }
  s1[ty][tx] = a;
  s2[ty][tx] = b;
  __syncthreads();
  if (ty != 0 || c >= cols) return;
  for (int k = 1; k < kWarpsPerBlock; ++k) {
    a += s1[k][tx];
    b += s2[k][tx];
  }
  out[c] = static_cast<float>(out[c] + a);
  if (out2) out2[c] = static_cast<float>(out2[c] + b);
}

// Rows per chunk of the column sums: at least 64, at most 256 chunks.
int64_t chunk_rows_for(int64_t rows) { return std::max<int64_t>(64, (rows + 255) / 256); }

// db[c] += Σ_r dy[r][c]; with x (and the rows' stats), also
// dw[c] += Σ_r dy[r][c]·x̂[r][c].
void column_sums(const float* dy, const float* x, const double* stats, int64_t rows, int64_t cols, float* db,
                 float* dw, cudaStream_t stream) {
  const int64_t chunk_rows = chunk_rows_for(rows), chunks = (rows + chunk_rows - 1) / chunk_rows;
  DeviceBuffer partial(static_cast<size_t>((x ? 2 : 1) * chunks * cols) * sizeof(double));
  const dim3 grid(static_cast<unsigned>((cols + kColumnTile - 1) / kColumnTile), static_cast<unsigned>(chunks));
  column_chunk_sums<<<grid, kLnThreads, 0, stream>>>(dy, x, stats, rows, cols, chunk_rows, partial.get<double>());
  check_launch("column sums kernel");
  add_chunk_sums<<<grid.x, kLnThreads, 0, stream>>>(partial.get<double>(), chunks, cols, db, x ? dw : nullptr);
  check_launch("column sums add kernel");
}

// One block per touched table row (blockIdx.x over the groups): table row
// index[g] += the rows order[offset[g] .. offset[g + 1]) of dout, in order.
__global__ void grouped_row_add(const int64_t* index, const int64_t* offset, const int64_t* order,
                                const float* dout, int64_t cols, float* table) {
  const int64_t g = blockIdx.x;
  float* dst = table + index[g] * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = dst[c];
    for (int64_t k = offset[g]; k < offset[g + 1]; ++k) v = __fadd_rn(v, dout[order[k] * cols + c]);
    dst[c] = v;
  }
}

__global__ void __launch_bounds__(kLnThreads)
    cross_entropy_rows(const float* logits, const int32_t* targets, int64_t cols, float grad_scale, float* dlogits,
                       double* row_loss) {
  __shared__ double scratch[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * cols;
  float* d = dlogits + r * cols;
  const int32_t t = targets[r];
  if (t < 0) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = 0.0f;
    if (threadIdx.x == 0) row_loss[r] = 0.0;
    return;
  }
  double mx = -static_cast<double>(INFINITY);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmax(mx, static_cast<double>(x[c]));
  mx = block_max(mx, scratch, -static_cast<double>(INFINITY));
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += exp(x[c] - mx);
  sum = block_sum(sum, scratch);
  const double xt = x[t];  // read before d (which may alias x) is written
  __syncthreads();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    d[c] = static_cast<float>(grad_scale * (exp(x[c] - mx) / sum - (c == t ? 1.0 : 0.0)));
  if (threadIdx.x == 0) row_loss[r] = log(sum) + mx - xt;
}

}  // namespace

void column_sums_accumulate(const float* x, int64_t rows, int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  column_sums(x, nullptr, nullptr, rows, cols, out, nullptr, stream);
}

namespace {

// An operand of a product: fp32, or already rounded to bf16.
struct Operand {
  const void* p;
  cudaDataType_t type = CUDA_R_32F;
};

// y[rows, out] (fp32) = (or +=, accumulate) x · W: x stored [rows, in], or
// [in, rows] (x_in_rows: read transposed); W stored [in, out], or [out, in]
// (w_out_in). fp32 products, or bf16 ones under the thread's bf16 products.
void product(Operand x, bool x_in_rows, Operand w, bool w_out_in, int64_t rows, int64_t in, int64_t out, float* y,
             bool accumulate, cudaStream_t stream) {
  GemmCall g;
  g.x = x.p;
  g.x_type = x.type;
  g.x_in_rows = x_in_rows;
  g.w = w.p;
  g.w_type = w.type;
  g.w_out_in = w_out_in;
  g.rows = rows;
  g.in = in;
  g.out = out;
  g.y = y;
  g.accumulate = accumulate;
  g.fast_bf16 = fp32_products() == Fp32Products::bf16;
  gemm(g, stream);
}

}  // namespace

void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db, cudaStream_t stream) {
  if (rows <= 0) return;
  // Under bf16 products dy, an operand of both products, is rounded to bf16
  // once (gemm would round it for each).
  const bool bf16 = fp32_products() == Fp32Products::bf16;
  DeviceBuffer dy16(bf16 ? static_cast<size_t>(rows * out) * 2 : 0);
  if (bf16) convert(dy, DType::F32, dy16.get(), DType::BF16, rows * out, stream);
  const Operand g = bf16 ? Operand{dy16.get(), CUDA_R_16BF} : Operand{dy};
  // dx[rows, in] = dy[rows, out] · Wᵀ: W [in, out] is that product's [out', in'] weight.
  if (dx) product(g, false, {w}, true, rows, out, in, dx, false, stream);
  // dw[in, out] += xᵀ[in, rows] · dy[rows, out]: x read transposed.
  product({x}, true, g, false, in, rows, out, dw, true, stream);
  if (db) column_sums_accumulate(dy, rows, out, db, stream);
}

namespace {

// The rows of dout grouped by the table row they add to (ascending), each
// group in ascending r, uploaded, then one grouped_row_add.
template <typename Index>
void add_rows_by_index(const Index* index_host, int64_t rows, const float* dout, int64_t cols, float* table,
                       cudaStream_t stream) {
  std::vector<int64_t> order(static_cast<size_t>(rows));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return index_host[a] < index_host[b]; });
  std::vector<int64_t> index, offset;
  for (int64_t k = 0; k < rows; ++k) {
    const auto i = static_cast<int64_t>(index_host[order[k]]);
    if (index.empty() || index.back() != i) {
      index.push_back(i);
      offset.push_back(k);
    }
  }
  offset.push_back(rows);
  const int64_t groups = static_cast<int64_t>(index.size());
  DeviceBuffer buf((2 * static_cast<size_t>(groups) + 1 + static_cast<size_t>(rows)) * sizeof(int64_t));
  int64_t* d_index = buf.get<int64_t>();
  int64_t* d_offset = d_index + groups;
  int64_t* d_order = d_offset + groups + 1;
  copy_bytes(d_index, Device::CUDA, index.data(), Device::CPU, index.size() * sizeof(int64_t));
  copy_bytes(d_offset, Device::CUDA, offset.data(), Device::CPU, offset.size() * sizeof(int64_t));
  copy_bytes(d_order, Device::CUDA, order.data(), Device::CPU, order.size() * sizeof(int64_t));
  grouped_row_add<<<static_cast<unsigned>(groups), kLnThreads, 0, stream>>>(d_index, d_offset, d_order, dout, cols,
                                                                            table);
  check_launch("embedding_backward kernel");
}

}  // namespace

void embedding_backward(const int32_t* ids_host, const int64_t* positions_host, int64_t rows, const float* dout,
                        int64_t cols, float* dwte, float* dwpe, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  add_rows_by_index(ids_host, rows, dout, cols, dwte, stream);
  add_rows_by_index(positions_host, rows, dout, cols, dwpe, stream);
}

void cross_entropy(const float* logits, const int32_t* targets_host, int64_t rows, int64_t cols, float grad_scale,
                   float* dlogits, double* row_loss, cudaStream_t stream) {
  if (rows <= 0) return;
  DeviceBuffer buf(static_cast<size_t>(rows) * sizeof(int32_t));
  auto* d_targets = buf.get<int32_t>();
  copy_bytes(d_targets, Device::CUDA, targets_host, Device::CPU, static_cast<size_t>(rows) * sizeof(int32_t));
  cross_entropy_rows<<<static_cast<unsigned>(rows), kLnThreads, 0, stream>>>(logits, d_targets, cols, grad_scale,
                                                                             dlogits, row_loss);
  check_launch("cross_entropy kernel");
}

void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc, float* da,
                        float* db, cudaStream_t stream) {
  if (m <= 0) return;
  // da[m, k] = dc[m, n] · b[n, k]: b is that product's [in, out] weight.
  if (da) product({dc}, false, {b}, false, m, n, k, da, false, stream);
  // db[n, k] += dcᵀ[n, m] · a[m, k]: dc read transposed.
  product({dc}, true, {a}, false, n, m, k, db, true, stream);
}

void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  DeviceBuffer stats(static_cast<size_t>(2 * rows) * sizeof(double));
  layer_norm_backward_dx<<<static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), kLnThreads, 0,
                           stream>>>(x, rows, cols, w, eps, dy, dx, stats.get<double>());
  check_launch("layer_norm_backward kernel");
  column_sums(dy, x, stats.get<double>(), rows, cols, db, dw, stream);
}

void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first, cudaStream_t stream) {
  if (p <= 0.0f || n <= 0) return;
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;  // cpu::dropout_scale, on the host
  dropout_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, n, p, scale, key, first);
  check_launch("dropout kernel");
}

void gelu_new_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n > 0) launch_gelu_backward<false>(x, dy, n, stream);
}

void gelu_erf_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n > 0) launch_gelu_backward<true>(x, dy, n, stream);
}

void adamw_update(const backend::AdamWArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  adamw_kernel<<<elementwise_blocks(a.n), kElementwiseThreads, 0, stream>>>(a);
  check_launch("adamw kernel");
}

}  // namespace gpt2q::cuda
