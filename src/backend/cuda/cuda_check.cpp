#include "backend/cuda/cuda_check.h"


#include "core/error.h"

namespace gpt2q::cuda {

void fail_cuda(cudaError_t err, const char* what) {
  fail("CUDA: {} failed: {} ({})", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

void fail_too_large(const char* what, int64_t value, int64_t limit) {
  fail("CUDA: {} {} exceeds the kernel's limit of {}", what, value, limit);
}

void fail_bad_value(const char* what, int64_t value) { fail("CUDA: {}, got {}", what, value); }

}  // namespace gpt2q::cuda
