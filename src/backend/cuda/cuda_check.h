#pragma once
// Turning CUDA runtime status codes into gpt2q::Error. Kept free
// of fmt and the Tensor headers so that .cu files can include it.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace gpt2q::cuda {

// Throws Error("CUDA: <what> failed: <message> (<name>)").
[[noreturn]] void fail_cuda(cudaError_t err, const char* what);
// Throws Error("CUDA: <what> <value> exceeds the kernel's limit of <limit>").
[[noreturn]] void fail_too_large(const char* what, int64_t value, int64_t limit);
// Throws Error("CUDA: <what>, got <value>") for a bad argument.
[[noreturn]] void fail_bad_value(const char* what, int64_t value);

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail_cuda(err, what);
}

// After a kernel launch. Catches launch errors (no device, bad
// configuration) at once; a fault inside the kernel is asynchronous and
// surfaces at the next synchronising call (a copy to the host,
// cuda::synchronize()).
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

}  // namespace gpt2q::cuda
