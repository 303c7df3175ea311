#include "backend/cpu/linalg.h"

#include <cblas.h>

#include <cmath>
#include <limits>
#include <utility>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt2q::cpu {

namespace {

double dot(const double* a, const double* b, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

blasint blas_int(int64_t v) {
  GPT2Q_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "GEMM dimension {} out of BLAS range", v);
  return static_cast<blasint>(v);
}

}  // namespace

bool cholesky_lower(double* a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double* rj = a + j * n;
    const double d = rj[j] - dot(rj, rj, j);
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    const double ljj = std::sqrt(d);
    rj[j] = ljj;
    // Column j below the diagonal: each row's inner product with row j.
#pragma omp parallel for schedule(static) if ((n - j) * j >= (1 << 15))
    for (int64_t i = j + 1; i < n; ++i) {
      double* ri = a + i * n;
      ri[j] = (ri[j] - dot(ri, rj, j)) / ljj;
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = 0.0;
  return true;
}

void lower_triangular_inverse(const double* l, int64_t n, double* inv) {
  // Column j of L⁻¹ solves L x = e_j by forward substitution; row i of the
  // result needs rows < i of the same column. Computed transposed (row j of
  // t = column j of L⁻¹) so that each inner product is contiguous in t; the
  // columns are independent and shared among the threads.
  double* t = inv;  // t[j][i] = (L⁻¹)[i][j], transposed in place at the end
  for (int64_t x = 0; x < n * n; ++x) t[x] = 0.0;
#pragma omp parallel for schedule(dynamic, 8) if (n >= 64)
  for (int64_t j = 0; j < n; ++j) {
    double* tj = t + j * n;
    tj[j] = 1.0 / l[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      const double* li = l + i * n;
      tj[i] = -dot(li + j, tj + j, i - j) / li[i];
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) std::swap(t[i * n + j], t[j * n + i]);
}

namespace {
void dgemm(bool a_transposed, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
           const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  ensure_blas_kernels();
  cblas_dgemm(CblasRowMajor, a_transposed ? CblasTrans : CblasNoTrans, CblasNoTrans, blas_int(m), blas_int(n),
              blas_int(k), alpha, a, blas_int(lda), b, blas_int(ldb), beta, c, blas_int(ldc));
}
}  // namespace

void dgemm_nn(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
              int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm(false, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dgemm_tn(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
              int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm(true, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace reference {

bool cholesky_lower(double* a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0.0)) return false;
    a[j * n + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / a[j * n + j];
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = 0.0;
  return true;
}

void lower_triangular_inverse(const double* l, int64_t n, double* inv) {
  for (int64_t x = 0; x < n * n; ++x) inv[x] = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    inv[j * n + j] = 1.0 / l[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = j; k < i; ++k) s += l[i * n + k] * inv[k * n + j];
      inv[i * n + j] = -s / l[i * n + i];
    }
  }
}

}  // namespace reference

}  // namespace gpt2q::cpu
