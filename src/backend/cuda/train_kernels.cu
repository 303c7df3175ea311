// train_kernels.h: elementwise kernels of the training pass (dropout, GELU
// backward, AdamW), grid-stride loops over any n.
#include <algorithm>
#include <numeric>
#include <vector>

#include "backend/cuda/cuda_check.h"
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

__global__ void gelu_new_backward_kernel(const float* x, float* dy, int64_t n) {
  const double k = 0.79788456080286535588;  // sqrt(2 / pi)
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const double v = x[i];
    const double t = tanh(k * (v + 0.044715 * v * v * v));
    const double grad = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
    dy[i] = static_cast<float>(dy[i] * grad);
  }
}

__global__ void gelu_erf_backward_kernel(const float* x, float* dy, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const double v = x[i];
    const double grad = 0.5 * erfc(-v * 0.70710678118654752440) + v * exp(-0.5 * v * v) * 0.39894228040143267794;
    dy[i] = static_cast<float>(dy[i] * grad);
  }
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

// Rows r = blockIdx.x, + gridDim.x, ...: dx of each row, and the block's
// partial column sums of dy·x̂ and dy (double) in partial[block][2][cols],
// each column owned by one thread of the block.
constexpr int kLnThreads = 256;

__global__ void __launch_bounds__(kLnThreads)
    layer_norm_backward_rows(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                             float* dx, double* partial) {
  __shared__ double scratch[32];
  double* pdw = partial + static_cast<int64_t>(blockIdx.x) * 2 * cols;
  double* pdb = pdw + cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) pdw[c] = pdb[c] = 0.0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    const float* g = dy + r * cols;
    const RowStats st = block_row_stats(xr, cols, eps, scratch);
    const double mean = st.mean, rstd = st.rstd;
    double mg = 0.0, mgx = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double xhat = (xr[c] - mean) * rstd, gw = static_cast<double>(g[c]) * w[c];
      mg += gw;
      mgx += gw * xhat;
      pdw[c] += static_cast<double>(g[c]) * xhat;
      pdb[c] += g[c];
    }
    mg = block_sum(mg, scratch) / static_cast<double>(cols);
    mgx = block_sum(mgx, scratch) / static_cast<double>(cols);
    float* dxr = dx + r * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double xhat = (xr[c] - mean) * rstd;
      dxr[c] += static_cast<float>(rstd * (static_cast<double>(g[c]) * w[c] - mg - xhat * mgx));
    }
  }
}

// dw[c] += Σ_b partial[b][0][c], db[c] += Σ_b partial[b][1][c], b in order.
__global__ void layer_norm_backward_columns(const double* partial, int blocks, int64_t cols, float* dw, float* db) {
  for (int64_t c = grid_start(); c < cols; c += grid_stride()) {
    double sw = 0.0, sb = 0.0;
    for (int b = 0; b < blocks; ++b) {
      sw += partial[static_cast<int64_t>(b) * 2 * cols + c];
      sb += partial[static_cast<int64_t>(b) * 2 * cols + cols + c];
    }
    dw[c] = static_cast<float>(dw[c] + sw);
    db[c] = static_cast<float>(db[c] + sb);
  }
}

// Partial column sums of rows blockIdx.x, + gridDim.x, ... in double.
__global__ void column_partials(const float* x, int64_t rows, int64_t cols, double* partial) {
  double* p = partial + static_cast<int64_t>(blockIdx.x) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    double s = 0.0;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) s += x[r * cols + c];
    p[c] = s;
  }
}

__global__ void add_column_partials(const double* partial, int blocks, int64_t cols, float* out) {
  for (int64_t c = grid_start(); c < cols; c += grid_stride()) {
    double s = 0.0;
    for (int b = 0; b < blocks; ++b) s += partial[static_cast<int64_t>(b) * cols + c];
    out[c] = static_cast<float>(out[c] + s);
  }
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

// Blocks of the row passes: a function of the row count only.
int row_pass_blocks(int64_t rows) { return static_cast<int>(rows < 264 ? rows : 264); }

}  // namespace

void column_sums_accumulate(const float* x, int64_t rows, int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int blocks = row_pass_blocks(rows);
  DeviceBuffer partial(static_cast<size_t>(blocks) * static_cast<size_t>(cols) * sizeof(double));
  column_partials<<<blocks, kLnThreads, 0, stream>>>(x, rows, cols, partial.get<double>());
  check_launch("column sums kernel");
  add_column_partials<<<elementwise_blocks(cols), kElementwiseThreads, 0, stream>>>(partial.get<double>(), blocks,
                                                                                    cols, out);
  check_launch("column sums add kernel");
}

namespace {

// fp32 y[rows, out] = (or +=, accumulate) x · W: x stored [rows, in], or
// [in, rows] (x_in_rows: read transposed); W stored [in, out], or [out, in]
// (w_out_in).
void fp32_product(const float* x, bool x_in_rows, const float* w, bool w_out_in, int64_t rows, int64_t in,
                  int64_t out, float* y, bool accumulate, cudaStream_t stream) {
  GemmCall g;
  g.x = x;
  g.x_in_rows = x_in_rows;
  g.w = w;
  g.w_out_in = w_out_in;
  g.rows = rows;
  g.in = in;
  g.out = out;
  g.y = y;
  g.accumulate = accumulate;
  gemm(g, stream);
}

}  // namespace

void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db, cudaStream_t stream) {
  if (rows <= 0) return;
  // dx[rows, in] = dy[rows, out] · Wᵀ: W [in, out] is that product's [out', in'] weight.
  if (dx) fp32_product(dy, false, w, true, rows, out, in, dx, false, stream);
  // dw[in, out] += xᵀ[in, rows] · dy[rows, out]: x read transposed.
  fp32_product(x, true, dy, false, in, rows, out, dw, true, stream);
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
  if (da) fp32_product(dc, false, b, false, m, n, k, da, false, stream);
  // db[n, k] += dcᵀ[n, m] · a[m, k]: dc read transposed.
  fp32_product(dc, true, a, false, n, m, k, db, true, stream);
}

void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  // A function of the row count only (the sums' order must not depend on
  // the device): enough blocks to fill a large GPU, few partial rows to add.
  const int blocks = row_pass_blocks(rows);
  DeviceBuffer partial(static_cast<size_t>(blocks) * 2 * static_cast<size_t>(cols) * sizeof(double));
  layer_norm_backward_rows<<<blocks, kLnThreads, 0, stream>>>(x, rows, cols, w, eps, dy, dx, partial.get<double>());
  check_launch("layer_norm_backward kernel");
  layer_norm_backward_columns<<<elementwise_blocks(cols), kElementwiseThreads, 0, stream>>>(
      partial.get<double>(), blocks, cols, dw, db);
  check_launch("layer_norm_backward columns kernel");
}

void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first, cudaStream_t stream) {
  if (p <= 0.0f || n <= 0) return;
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;  // cpu::dropout_scale, on the host
  dropout_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, n, p, scale, key, first);
  check_launch("dropout kernel");
}

void gelu_new_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_new_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, dy, n);
  check_launch("gelu_new_backward kernel");
}

void gelu_erf_backward(const float* x, float* dy, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_erf_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, dy, n);
  check_launch("gelu_erf_backward kernel");
}

void adamw_update(const backend::AdamWArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  adamw_kernel<<<elementwise_blocks(a.n), kElementwiseThreads, 0, stream>>>(a);
  check_launch("adamw kernel");
}

}  // namespace gpt2q::cuda
