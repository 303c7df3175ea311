#pragma once
// Dense linear algebra in double on the CPU, for the second-order
// quantizers (quant/gptq.h): the Cholesky factor of a symmetric positive
// definite matrix, the inverse of a triangular one, and a double GEMM
// (OpenBLAS's dgemm). Row-major n x n matrices throughout. OpenBLAS here has
// no LAPACK C interface, so the factorisations are ours: column-by-column
// left-looking loops whose inner products run along contiguous rows
// (vectorised), rows of one column shared among the threads. Each has a
// scalar reference (linalg_reference) that the tests compare it with.
#include <cstdint>

namespace gpt2q::cpu {

// a = L·Lᵀ: writes L into the lower triangle of a (the upper triangle is set
// to zero). Returns false, leaving a in an unspecified state, when a pivot is
// not positive (a is not positive definite in double).
bool cholesky_lower(double* a, int64_t n);

// l lower triangular (non-zero diagonal): writes L⁻¹ (lower triangular) into
// inv.
void lower_triangular_inverse(const double* l, int64_t n, double* inv);

// c[m, n] = alpha · a[m, k] · b[k, n] + beta · c (row-major, leading
// dimensions given).
void dgemm_nn(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
              int64_t ldb, double beta, double* c, int64_t ldc);
// c[m, n] = alpha · a[k, m]ᵀ · b[k, n] + beta · c.
void dgemm_tn(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
              int64_t ldb, double beta, double* c, int64_t ldc);

namespace reference {
bool cholesky_lower(double* a, int64_t n);
void lower_triangular_inverse(const double* l, int64_t n, double* inv);
}  // namespace reference

}  // namespace gpt2q::cpu
