// Backward of the GEMM-shaped ops (linear / Conv1D, x·Bᵀ heads) through
// OpenBLAS, accumulating parameter gradients with beta = 1.
#include <cblas.h>

#include <algorithm>
#include <limits>

#include "backend/cpu/kernels_backward.h"
#include "core/error.h"

namespace gpt2q::cpu {

namespace {
blasint blas_dim(int64_t v) {
  GPT2Q_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "GEMM dimension {} out of BLAS range", v);
  return static_cast<blasint>(v);
}
}  // namespace

void sgemm_tn(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc) {
  ensure_blas_kernels();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blas_dim(m), blas_dim(n), blas_dim(k), alpha, a,
              blas_dim(lda), b, blas_dim(ldb), beta, c, blas_dim(ldc));
}

void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db) {
  if (dx) sgemm_nt(rows, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in);
  sgemm_tn(in, out, rows, 1.0f, x, in, dy, out, 1.0f, dw, out);
  if (!db) return;
  // Column sums: each thread owns a block of columns and walks all rows in
  // order, so the sum does not depend on how rows would be split.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (out + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * out >= kParallelMinStreamed)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(out, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = dy + r * out;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; ++c) db[c] += acc[c - c0];
  }
}

void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc, float* da,
                        float* db) {
  if (da) sgemm_nn(m, k, n, 1.0f, dc, n, b, k, 0.0f, da, k);
  sgemm_tn(n, k, m, 1.0f, dc, n, a, k, 1.0f, db, k);
}

}  // namespace gpt2q::cpu
