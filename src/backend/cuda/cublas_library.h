#pragma once
// cuBLAS, loaded with dlopen on first use instead of linked. A linked
// libcublas (54 MB, plus 542 MB of libcublasLt) is mapped and relocated at
// every start of every gpt2q process: ~80 ms and ~200 MB of RSS even for the
// commands and machines that never touch a GPU (docs/cuda.md). gpt2q calls
// a handful of entry points; they are looked up once, by name.
#include <cublas_v2.h>

namespace gpt2q::cuda {

struct CublasLibrary {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
  decltype(&cublasGetStatusName) status_name = nullptr;
};

// Loads libcublas.so.<major of the headers built against> from the loader's
// search path, else from the toolkit gpt2q was built with, on the first
// call (thread-safe). Throws gpt2q::Error naming the library and the
// loader's message when it cannot be loaded or lacks an entry point.
const CublasLibrary& cublas();

}  // namespace gpt2q::cuda
