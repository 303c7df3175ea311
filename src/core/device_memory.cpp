#include "core/device_memory.h"

#include <cstring>

#include "core/error.h"

#ifdef GPT2Q_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gpt2q {

#ifdef GPT2Q_CUDA

namespace {

void check(cudaError_t err, const char* what, size_t bytes) {
  if (err == cudaSuccess) return;
  // Clear a non-sticky error so that it does not resurface at the next call.
  cudaGetLastError();
  fail("CUDA: {} of {} bytes failed: {} ({})", what, bytes, cudaGetErrorString(err), cudaGetErrorName(err));
}

cudaMemcpyKind copy_kind(Device dst, Device src) {
  if (src == Device::CPU) return dst == Device::CPU ? cudaMemcpyHostToHost : cudaMemcpyHostToDevice;
  return dst == Device::CPU ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
}

}  // namespace

bool cuda_built() { return true; }

void* device_allocate_zeroed(size_t bytes, Device device) {
  GPT2Q_CHECK(device == Device::CUDA, "device_allocate_zeroed on {}", device_name(device));
  void* p = nullptr;
  // cudaMalloc(0) returns no pointer; a 1-byte allocation keeps "defined
  // tensor => non-null data" true for empty tensors, as on the host.
  check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc", bytes);
  if (const cudaError_t err = cudaMemset(p, 0, bytes); err != cudaSuccess) {
    cudaFree(p);
    check(err, "cudaMemset", bytes);
  }
  return p;
}

void device_free(void* p, Device device) noexcept {
  // A failure here (e.g. a context already torn down at exit) cannot be
  // reported from a destructor; the memory goes with the context anyway.
  if (device == Device::CUDA && p) cudaFree(p);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  check(cudaMemcpy(dst, src, bytes, copy_kind(dst_device, src_device)), "cudaMemcpy", bytes);
}

#else  // CPU-only build

bool cuda_built() { return false; }

void* device_allocate_zeroed(size_t bytes, Device device) {
  (void)bytes;
  fail("allocation on {} is not available in this build", device_name(device));
}

void device_free(void*, Device) noexcept {}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device != Device::CPU || src_device != Device::CPU)
    fail("copy from {} to {} is not available in this build", device_name(src_device), device_name(dst_device));
  if (bytes) std::memcpy(dst, src, bytes);
}

#endif

}  // namespace gpt2q
