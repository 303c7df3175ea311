#pragma once
// cuBLASLt, loaded with dlopen on first use instead of linked. A linked
// libcublasLt (542 MB) is mapped and relocated at every start of every gpt2q
// process: ~80 ms and ~200 MB of RSS even for the commands and machines that
// never touch a GPU (docs/cuda.md). gpt2q calls a handful of entry points;
// they are looked up once, by name.
#include <cublasLt.h>

namespace gpt2q::cuda {

struct CublasLtLibrary {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatrixLayoutSetAttribute) layout_set = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmulAlgoCheck) algo_check = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  decltype(&cublasLtGetStatusString) status_string = nullptr;
  decltype(&cublasLtGetStatusName) status_name = nullptr;
};

// Loads libcublasLt.so.<major of the headers built against> from the
// loader's search path, else from the toolkit gpt2q was built with, on the
// first call (thread-safe). Throws gpt2q::Error naming the library and the
// loader's message when it cannot be loaded or lacks an entry point.
const CublasLtLibrary& cublaslt();

}  // namespace gpt2q::cuda
