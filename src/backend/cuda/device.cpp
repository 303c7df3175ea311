// Device discovery and synchronisation for the CUDA backend.
#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "core/device_memory.h"

namespace gpt2q::cuda {

bool device_available(std::string* why) { return cuda_device_usable(why); }

std::string device_description() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp p{};
  check_cuda(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return fmt::format("{} (sm_{}{}, {} SMs, {:.1f} GiB)", p.name, p.major, p.minor, p.multiProcessorCount,
                     static_cast<double>(p.totalGlobalMem) / (1 << 30));
}

DeviceInfo device_info() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp p{};
  check_cuda(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  int driver = 0, runtime = 0;
  check_cuda(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
  check_cuda(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  DeviceInfo info;
  info.name = p.name;
  info.compute_capability = fmt::format("{}.{}", p.major, p.minor);
  info.driver = fmt::format("{}.{}", driver / 1000, (driver % 1000) / 10);
  info.runtime = fmt::format("{}.{}", runtime / 1000, (runtime % 1000) / 10);
  info.multiprocessors = p.multiProcessorCount;
  info.memory = p.totalGlobalMem;
  return info;
}

void synchronize() { check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace gpt2q::cuda
