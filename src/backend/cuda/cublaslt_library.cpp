#include "backend/cuda/cublaslt_library.h"

#include <dlfcn.h>

#include <string>

#include "core/error.h"

namespace gpt2q::cuda {

namespace {

const std::string kSoname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);

void* open_library() {
  if (void* h = dlopen(kSoname.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  const std::string first_error = dlerror();
#ifdef GPT2Q_CUBLAS_DIR
  const std::string fallback = std::string(GPT2Q_CUBLAS_DIR) + "/" + kSoname;
  if (void* h = dlopen(fallback.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
#endif
  fail("cuBLASLt: cannot load {}: {}", kSoname, first_error);
}

template <typename Fn>
void bind(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!fn) fail("cuBLASLt: {} has no {}", kSoname, name);
}

CublasLtLibrary load() {
  // Kept loaded for the life of the process (the handles live as long).
  void* lib = open_library();
  CublasLtLibrary l;
  bind(lib, "cublasLtCreate", l.create);
  bind(lib, "cublasLtDestroy", l.destroy);
  bind(lib, "cublasLtMatmulDescCreate", l.desc_create);
  bind(lib, "cublasLtMatmulDescDestroy", l.desc_destroy);
  bind(lib, "cublasLtMatmulDescSetAttribute", l.desc_set);
  bind(lib, "cublasLtMatrixLayoutCreate", l.layout_create);
  bind(lib, "cublasLtMatrixLayoutSetAttribute", l.layout_set);
  bind(lib, "cublasLtMatrixLayoutDestroy", l.layout_destroy);
  bind(lib, "cublasLtMatmulPreferenceCreate", l.pref_create);
  bind(lib, "cublasLtMatmulPreferenceDestroy", l.pref_destroy);
  bind(lib, "cublasLtMatmulPreferenceSetAttribute", l.pref_set);
  bind(lib, "cublasLtMatmulAlgoGetHeuristic", l.heuristic);
  bind(lib, "cublasLtMatmulAlgoCheck", l.algo_check);
  bind(lib, "cublasLtMatmul", l.matmul);
  bind(lib, "cublasLtGetStatusString", l.status_string);
  bind(lib, "cublasLtGetStatusName", l.status_name);
  return l;
}

}  // namespace

const CublasLtLibrary& cublaslt() {
  static const CublasLtLibrary library = load();
  return library;
}

}  // namespace gpt2q::cuda
