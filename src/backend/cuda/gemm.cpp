// linear and matmul_nt through cuBLAS sgemm. cuBLAS is column-major; a
// row-major [r, c] buffer is the column-major [c, r] matrix, so each
// row-major product is computed as its transpose: yᵀ = wᵀ·xᵀ.
//
// Precision: the handle runs in CUBLAS_DEFAULT_MATH, whose fp32 GEMMs
// multiply and accumulate in full fp32. TF32 (10-bit mantissa inputs, ~1e-3
// relative error) would need CUBLAS_TF32_TENSOR_OP_MATH, which gpt2q never
// sets; results match the fp32 CPU reference to rounding (~1e-6).
#include <cublas_v2.h>

#include <climits>

#include "backend/cuda/cublas_library.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/elementwise.h"
#include "core/error.h"

namespace gpt2q::cuda {

namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail_cublas(static_cast<int>(status), what);
}

// One handle per host thread (cuBLAS handles are not safe to share between
// threads that call concurrently), created on first use for the device that
// is current then, on the default stream.
class BlasHandle {
 public:
  BlasHandle() {
    check_cublas(cublas().create(&handle_), "cublasCreate");
    check_cublas(cublas().set_math_mode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    check_cublas(cublas().set_stream(handle_, nullptr), "cublasSetStream");
  }
  ~BlasHandle() { cublas().destroy(handle_); }
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

cublasHandle_t blas() {
  thread_local BlasHandle handle;
  return handle.get();
}

// cuBLAS takes int dimensions and leading dimensions.
int blas_dim(int64_t v, const char* op) {
  if (v < 0 || v > INT_MAX) fail("{}: dimension {} exceeds cuBLAS's int range", op, v);
  return static_cast<int>(v);
}

}  // namespace

void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y) {
  if (rows == 0 || out == 0) return;
  // y starts as the broadcast bias (or zeros) and the product is added to it.
  if (bias) {
    broadcast_rows(bias, rows, out, y);
  } else {
    fill(y, rows * out, 0.0f);
  }
  if (in == 0) return;
  const float one = 1.0f;
  // Column-major: yᵀ[out, rows] += wᵀ[out, in] · xᵀ[in, rows], where the
  // row-major w [in, out] is wᵀ with leading dimension out, and so on.
  check_cublas(cublas().sgemm(blas(), CUBLAS_OP_N, CUBLAS_OP_N, blas_dim(out, "linear"), blas_dim(rows, "linear"),
                           blas_dim(in, "linear"), &one, w, blas_dim(out, "linear"), x, blas_dim(in, "linear"), &one,
                           y, blas_dim(out, "linear")),
               "cublasSgemm (linear)");
}

void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    fill(c, m * n, 0.0f);
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  // Column-major: cᵀ[n, m] = b[n, k] · aᵀ[k, m]; the row-major b [n, k] is
  // bᵀ column-major with leading dimension k, hence OP_T on it.
  check_cublas(cublas().sgemm(blas(), CUBLAS_OP_T, CUBLAS_OP_N, blas_dim(n, "matmul_nt"), blas_dim(m, "matmul_nt"),
                           blas_dim(k, "matmul_nt"), &one, b, blas_dim(k, "matmul_nt"), a, blas_dim(k, "matmul_nt"),
                           &zero, c, blas_dim(n, "matmul_nt")),
               "cublasSgemm (matmul_nt)");
}

}  // namespace gpt2q::cuda
