#include "core/device_memory.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"

#ifdef GPT2Q_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gpt2q {

std::string format_bytes(size_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= double(1ull << 40)) return fmt::format("{:.2f} TiB", b / double(1ull << 40));
  if (b >= double(1ull << 30)) return fmt::format("{:.2f} GiB", b / double(1ull << 30));
  if (b >= double(1ull << 20)) return fmt::format("{:.1f} MiB", b / double(1ull << 20));
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{} B", bytes);
}

#ifdef GPT2Q_CUDA

namespace {

void check(cudaError_t err, const char* what, size_t bytes) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so that it does not resurface
  fail("CUDA: {} of {} failed: {} ({})", what, format_bytes(bytes), cudaGetErrorString(err), cudaGetErrorName(err));
}

// The sizes of live blocks (a free must know what it releases: the pool does
// not say), and the bytes they add up to. Allocations are per tensor and
// cached by the pool, so a mutex-guarded map costs nothing next to them.
struct LiveBlocks {
  std::mutex mutex;
  std::unordered_map<void*, size_t> size;
  size_t used = 0, peak = 0;
};
LiveBlocks& live() {
  static LiveBlocks* blocks = new LiveBlocks;  // never destroyed: frees at exit still find it
  return *blocks;
}

cudaMemPool_t default_pool() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice", 0);
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool", 0);
  return pool;
}

cudaStream_t thread_stream() {
  // Created on first use and never destroyed: tensors that outlive the
  // thread's static objects at exit still free onto it (the driver reclaims
  // everything with the process).
  thread_local cudaStream_t stream = [] {
    cudaStream_t s = nullptr;
    if (const cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); err != cudaSuccess) {
      cudaGetLastError();
      fail("CUDA: no usable device: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
    }
    // Keep freed blocks in the pool instead of returning them to the driver
    // at each synchronisation (the default threshold is 0).
    uint64_t threshold = UINT64_MAX;
    check(cudaMemPoolSetAttribute(default_pool(), cudaMemPoolAttrReleaseThreshold, &threshold),
          "cudaMemPoolSetAttribute", 0);
    return s;
  }();
  return stream;
}

cudaMemcpyKind copy_kind(Device dst, Device src) {
  if (src == Device::CPU) return dst == Device::CPU ? cudaMemcpyHostToHost : cudaMemcpyHostToDevice;
  return dst == Device::CPU ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
}

}  // namespace

bool cuda_built() { return true; }

void* cuda_stream() { return thread_stream(); }

bool cuda_device_usable(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // not sticky: leave no error behind for later calls
    if (why) *why = fmt::format("{} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device";
    return false;
  }
  return true;
}

void* device_allocate(size_t bytes, Device device, bool zero_fill) {
  GPT2Q_CHECK(device == Device::CUDA, "device_allocate on {}", device_name(device));
  cudaStream_t s = thread_stream();
  void* p = nullptr;
  // A 1-byte block keeps "defined tensor => non-null data" true for empty
  // tensors, as on the host.
  const size_t n = bytes == 0 ? 1 : bytes;
  const cudaError_t err = cudaMallocAsync(&p, n, s);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (err == cudaErrorMemoryAllocation) {
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      cudaGetLastError();
      fail("CUDA: out of memory: {} requested, {} of {} free", format_bytes(bytes), format_bytes(free),
           format_bytes(total));
    }
    check(err, "cudaMallocAsync", bytes);
  }
  if (zero_fill && bytes) {
    if (const cudaError_t e = cudaMemsetAsync(p, 0, bytes, s); e != cudaSuccess) {
      cudaFreeAsync(p, s);
      check(e, "cudaMemsetAsync", bytes);
    }
  }
  LiveBlocks& b = live();
  std::lock_guard<std::mutex> lock(b.mutex);
  b.size[p] = n;
  b.used += n;
  b.peak = std::max(b.peak, b.used);
  return p;
}

void device_free(void* p, Device device) noexcept {
  if (device != Device::CUDA || !p) return;
  {
    LiveBlocks& b = live();
    std::lock_guard<std::mutex> lock(b.mutex);
    if (auto it = b.size.find(p); it != b.size.end()) {
      b.used -= it->second;
      b.size.erase(it);
    }
  }
  // Queued after the work that used the block; a failure here (a context
  // torn down at exit, a sticky fault) cannot be reported from a destructor.
  if (cudaFreeAsync(p, thread_stream()) != cudaSuccess) cudaGetLastError();
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  cudaStream_t s = thread_stream();
  check(cudaMemcpyAsync(dst, src, bytes, copy_kind(dst_device, src_device), s), "cudaMemcpyAsync", bytes);
  // From pageable host memory the runtime stages the data before returning,
  // so the source may change after; to the host, wait until it is there.
  if (dst_device == Device::CPU) check(cudaStreamSynchronize(s), "a copy to the host (cudaStreamSynchronize)", bytes);
}

void zero_bytes(void* dst, Device device, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::CPU) {
    std::memset(dst, 0, bytes);
    return;
  }
  check(cudaMemsetAsync(dst, 0, bytes, thread_stream()), "cudaMemsetAsync", bytes);
}

void device_synchronize(Device device) {
  if (device != Device::CUDA) return;
  check(cudaStreamSynchronize(thread_stream()), "cudaStreamSynchronize", 0);
}

void select_cuda_device(int index) {
  int count = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess) {
    cudaGetLastError();
    fail("cuda:{}: no usable CUDA device ({})", index, cudaGetErrorString(err));
  }
  if (index < 0 || index >= count) fail("cuda:{}: no such device ({} found)", index, count);
  check(cudaSetDevice(index), "cudaSetDevice", 0);
}

DeviceMemoryStats device_memory_stats(Device device) {
  DeviceMemoryStats st;
  if (device != Device::CUDA) return st;
  {
    LiveBlocks& b = live();
    std::lock_guard<std::mutex> lock(b.mutex);
    st.used = b.used;
    st.peak_used = b.peak;
  }
  cudaMemPool_t pool = default_pool();
  uint64_t v = 0;
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &v), "cudaMemPoolGetAttribute", 0);
  st.reserved = v;
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &v), "cudaMemPoolGetAttribute", 0);
  st.peak_reserved = v;
  check(cudaMemGetInfo(&st.free, &st.total), "cudaMemGetInfo", 0);
  return st;
}

void reset_device_memory_peak(Device device) {
  if (device != Device::CUDA) return;
  LiveBlocks& b = live();
  std::lock_guard<std::mutex> lock(b.mutex);
  b.peak = b.used;
  uint64_t zero = 0;
  cudaMemPoolSetAttribute(default_pool(), cudaMemPoolAttrReservedMemHigh, &zero);
}

void release_cached_device_memory(Device device) {
  if (device != Device::CUDA) return;
  check(cudaStreamSynchronize(thread_stream()), "cudaStreamSynchronize", 0);
  check(cudaMemPoolTrimTo(default_pool(), 0), "cudaMemPoolTrimTo", 0);
}

#else  // CPU-only build

bool cuda_built() { return false; }

bool cuda_device_usable(std::string* why) {
  if (why) *why = "this build has no CUDA backend";
  return false;
}

void* device_allocate(size_t bytes, Device device, bool) {
  (void)bytes;
  fail("allocation on {} is not available in this build", device_name(device));
}

void device_free(void*, Device) noexcept {}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device != Device::CPU || src_device != Device::CPU)
    fail("copy from {} to {} is not available in this build", device_name(src_device), device_name(dst_device));
  if (bytes) std::memcpy(dst, src, bytes);
}

void zero_bytes(void* dst, Device device, size_t bytes) {
  if (device != Device::CPU) fail("{} is not available in this build", device_name(device));
  if (bytes) std::memset(dst, 0, bytes);
}

void* cuda_stream() { fail("CUDA is not available in this build"); }
void device_synchronize(Device device) {
  if (device != Device::CPU) fail("{} is not available in this build", device_name(device));
}
void select_cuda_device(int index) { fail("cuda:{}: this build has no CUDA backend (built without nvcc)", index); }
DeviceMemoryStats device_memory_stats(Device) { return {}; }
void reset_device_memory_peak(Device) {}
void release_cached_device_memory(Device) {}

#endif

}  // namespace gpt2q
