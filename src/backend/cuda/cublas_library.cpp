#include "backend/cuda/cublas_library.h"

#include <dlfcn.h>

#include <string>

#include "core/error.h"

namespace gpt2q::cuda {

namespace {

const std::string kSoname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);

void* open_library() {
  if (void* h = dlopen(kSoname.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  const std::string first_error = dlerror();
#ifdef GPT2Q_CUBLAS_DIR
  const std::string fallback = std::string(GPT2Q_CUBLAS_DIR) + "/" + kSoname;
  if (void* h = dlopen(fallback.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
#endif
  fail("cuBLAS: cannot load {}: {}", kSoname, first_error);
}

template <typename Fn>
void bind(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!fn) fail("cuBLAS: {} has no {}", kSoname, name);
}

CublasLibrary load() {
  // Kept loaded for the life of the process (the handles live as long).
  void* lib = open_library();
  CublasLibrary l;
  bind(lib, "cublasCreate_v2", l.create);
  bind(lib, "cublasDestroy_v2", l.destroy);
  bind(lib, "cublasSetMathMode", l.set_math_mode);
  bind(lib, "cublasSetStream_v2", l.set_stream);
  bind(lib, "cublasSgemm_v2", l.sgemm);
  bind(lib, "cublasGetStatusString", l.status_string);
  bind(lib, "cublasGetStatusName", l.status_name);
  return l;
}

}  // namespace

const CublasLibrary& cublas() {
  static const CublasLibrary library = load();
  return library;
}

}  // namespace gpt2q::cuda
