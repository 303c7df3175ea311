// GEMM through OpenBLAS. Row-major throughout; GPT-2's Conv1D weights are
// [in, out], so a linear layer is a plain NN product.
#include <cblas.h>
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <mutex>

#include "backend/cpu/cpu_kernels.h"
#include "core/cpu_features.h"
#include "core/error.h"

namespace gpt2q::cpu {

namespace {
blasint as_blas(int64_t v) {
  GPT2Q_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "GEMM dimension {} out of BLAS range", v);
  return static_cast<blasint>(v);
}

// An empty inner dimension leaves c = beta * c; BLAS would reject lda = 0.
void scale_only(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

// One row (decoding a token) is a matrix-vector product: sgemv streams the
// weight once, where sgemm would first copy (pack) all of it. y is zeroed
// first when beta is 0 so that stale contents (NaN) cannot leak through
// BLAS's scaling of y.
void gemv_row(bool b_transposed, int64_t n, int64_t k, float alpha, const float* a, const float* b, int64_t ldb,
              float beta, float* c) {
  if (beta == 0.0f) std::memset(c, 0, sizeof(float) * n);
  if (b_transposed) {
    // c[n] = b[n, k] · a[k]
    cblas_sgemv(CblasRowMajor, CblasNoTrans, as_blas(n), as_blas(k), alpha, b, as_blas(ldb), a, 1, beta, c, 1);
  } else {
    // c[n] = b[k, n]ᵀ · a[k]
    cblas_sgemv(CblasRowMajor, CblasTrans, as_blas(k), as_blas(n), alpha, b, as_blas(ldb), a, 1, beta, c, 1);
  }
}
}  // namespace

std::string blas_description() {
  ensure_blas_kernels();
  std::string s = openblas_get_config();
  const char* core = openblas_get_corename();
  if (core) s += std::string(" (core: ") + core + ")";
  return s;
}

std::string blas_coretype_upgrade() {
  if (std::getenv("OPENBLAS_CORETYPE")) return "";
  const char* core = openblas_get_corename();
  if (!core) return "";
  std::string name(core);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // The sets older than AVX2 that OpenBLAS falls back to.
  static const char* kGeneric[] = {"prescott", "katmai", "coppermine", "northwood", "banias", "core2",
                                   "penryn",   "dunnington", "nehalem", "atom", "sandybridge"};
  if (std::find(std::begin(kGeneric), std::end(kGeneric), name) == std::end(kGeneric)) return "";
  const CpuFeatures& f = cpu_features();
  if (f.avx512_ok() && f.avx512dq && f.avx512bf16) return "Cooperlake";
  if (f.avx512_ok() && f.avx512dq) return "SkylakeX";
  if (f.avx2 && f.fma) return "Haswell";
  return "";
}

void ensure_blas_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string core = blas_coretype_upgrade();
    if (core.empty()) return;
    using Fn = void (*)();
    const auto init = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
    const auto quit = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
    if (!init || !quit || setenv("OPENBLAS_CORETYPE", core.c_str(), 0) != 0) return;
    quit();  // forgets the kernel table (nothing else), so that init chooses again
    init();
  });
}

void sgemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc) {
  ensure_blas_kernels();
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_only(m, n, beta, c, ldc);
  if (m == 1) return gemv_row(false, n, k, alpha, a, b, ldb, beta, c);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, as_blas(m), as_blas(n), as_blas(k), alpha, a,
              as_blas(lda), b, as_blas(ldb), beta, c, as_blas(ldc));
}

void sgemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc) {
  ensure_blas_kernels();
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_only(m, n, beta, c, ldc);
  if (m == 1) return gemv_row(true, n, k, alpha, a, b, ldb, beta, c);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, as_blas(m), as_blas(n), as_blas(k), alpha, a,
              as_blas(lda), b, as_blas(ldb), beta, c, as_blas(ldc));
}

void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y) {
  if (rows == 0) return;
  // Bias first, then accumulate the product onto it (beta = 1), as
  // torch.addmm(bias, x, w) does: one pass over y instead of two.
  if (bias) {
#pragma omp parallel for schedule(static) if (rows * out >= kParallelMinStreamed)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * out, bias, sizeof(float) * out);
  }
  sgemm_nn(rows, out, in, 1.0f, x, in, w, out, bias ? 1.0f : 0.0f, y, out);
}

}  // namespace gpt2q::cpu
