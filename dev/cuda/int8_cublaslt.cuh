// cuBLASLt's int8 GEMM for llm_int8.cu, with the library loaded at run time
// (dlopen, as src/backend/cuda loads cuBLAS): the harnesses build with no
// link flag beyond nvcc's defaults.
//
// Layout: row-major CA[rows, in] is column-major [in x rows] (ld = in) and
// row-major CB[out, in] column-major [in x out]. cuBLASLt then computes the
// column-major acc^T [out x rows] (ld = out), which is row-major
// acc[rows, out], as op(A) . op(B) with A = CB (transa = T), B = CA
// (transb = N), m = out, n = rows, k = in: the "TN" form, the only one the
// int8 (IMMA) kernels accept with the plain column-major order, which also
// want m, k and the leading dimensions multiples of 4 (pointers 16-byte
// aligned for the fast kernels). CUBLAS_COMPUTE_32I, int8 A/B, int32 C,
// alpha = 1 and beta = 0 as int32.
#pragma once
#include <cublasLt.h>
#include <dlfcn.h>

#include <cstdio>
#include <string>
#include <type_traits>

// The library, loaded once.
struct LtApi {
  decltype(&cublasLtCreate) create;
  decltype(&cublasLtDestroy) destroy;
  decltype(&cublasLtMatmulDescCreate) desc_create;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set;
  decltype(&cublasLtMatrixLayoutCreate) layout_create;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic;
  decltype(&cublasLtMatmul) matmul;
  cublasLtHandle_t handle = nullptr;
  std::string error;
};
inline LtApi& lt_api() {
  static LtApi api = [] {
    LtApi a{};
    const std::string so = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen(("/usr/local/cuda/lib64/" + so).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      a.error = "cannot load " + so + ": " + dlerror();
      return a;
    }
    bool ok = true;
    auto bind = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn) ok = false, a.error += std::string(" missing ") + name;
    };
    bind(a.create, "cublasLtCreate");
    bind(a.destroy, "cublasLtDestroy");
    bind(a.desc_create, "cublasLtMatmulDescCreate");
    bind(a.desc_destroy, "cublasLtMatmulDescDestroy");
    bind(a.desc_set, "cublasLtMatmulDescSetAttribute");
    bind(a.layout_create, "cublasLtMatrixLayoutCreate");
    bind(a.layout_destroy, "cublasLtMatrixLayoutDestroy");
    bind(a.pref_create, "cublasLtMatmulPreferenceCreate");
    bind(a.pref_destroy, "cublasLtMatmulPreferenceDestroy");
    bind(a.pref_set, "cublasLtMatmulPreferenceSetAttribute");
    bind(a.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    bind(a.matmul, "cublasLtMatmul");
    if (ok && a.create(&a.handle) != CUBLAS_STATUS_SUCCESS) a.error = "cublasLtCreate failed", a.handle = nullptr;
    return a;
  }();
  return api;
}

inline int g_lt_failures = 0;  // run-time refusals (see LtGemm::run)

// One (rows, out, in) problem, planned once on the host (descriptors and the
// heuristic's algorithm); run() only enqueues cublasLtMatmul.
struct LtGemm {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
  std::string why;
  LtGemm(int rows, int out, int in, size_t workspace_bytes) {
    const LtApi& api = lt_api();
    if (!api.handle) {
      why = api.error;
      return;
    }
    if (out % 4 || in % 4) {
      why = "out and in must be multiples of 4";
      return;
    }
    const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    bool good = api.desc_create(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I) == CUBLAS_STATUS_SUCCESS &&
                api.desc_set(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t) == CUBLAS_STATUS_SUCCESS &&
                api.desc_set(op, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n) == CUBLAS_STATUS_SUCCESS &&
                api.layout_create(&la, CUDA_R_8I, in, out, in) == CUBLAS_STATUS_SUCCESS &&    // CB: [in x out], ld in
                api.layout_create(&lb, CUDA_R_8I, in, rows, in) == CUBLAS_STATUS_SUCCESS &&   // CA: [in x rows], ld in
                api.layout_create(&lc, CUDA_R_32I, out, rows, out) == CUBLAS_STATUS_SUCCESS;  // acc^T: [out x rows]
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    good = good && api.pref_create(&pref) == CUBLAS_STATUS_SUCCESS &&
           api.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes) ==
               CUBLAS_STATUS_SUCCESS &&
           api.heuristic(api.handle, op, la, lb, lc, lc, pref, 1, &result, &found) == CUBLAS_STATUS_SUCCESS && found > 0;
    if (pref) api.pref_destroy(pref);
    if (good) algo = result.algo, ok = true;
    else why = "no cuBLASLt algorithm";
  }
  ~LtGemm() {
    const LtApi& api = lt_api();
    if (op) api.desc_destroy(op);
    for (auto l : {la, lb, lc})
      if (l) api.layout_destroy(l);
  }
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;
  // False (and counted in g_lt_failures, which main reports as a FAIL) when
  // cuBLASLt refuses at run time; the caller then runs the tiled kernel.
  bool run(const int8_t* ca, const int8_t* cb, int32_t* acc, void* workspace, size_t workspace_bytes,
           cudaStream_t s) const {
    const int32_t alpha = 1, beta = 0;
    const cublasStatus_t st = lt_api().matmul(lt_api().handle, op, &alpha, cb, la, ca, lb, &beta, acc, lc, acc, lc,
                                              &algo, workspace, workspace_bytes, s);
    if (st == CUBLAS_STATUS_SUCCESS) return true;
    if (g_lt_failures++ == 0) std::printf("cublasLtMatmul failed: status %d\n", static_cast<int>(st));
    return false;
  }
};

