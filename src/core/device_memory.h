#pragma once
// Raw memory on devices other than the host: allocation, release, copies
// between any two devices, and the CUDA stream work is ordered on. Storage
// (tensor.h) owns and frees device memory through these, which is why they
// live in core, the bottom layer, and not in backend/cuda above it: a Storage
// destructor must be able to free CUDA memory without core depending on a
// backend.
//
// In a GPT2Q_CUDA build:
//  - Every host thread has its own non-default CUDA stream (cuda_stream()),
//    created on first use. All gpt2q device work is queued on it: kernels,
//    cuBLASLt, copies, allocations and frees. Work of one thread therefore
//    runs in order without any synchronisation, and a CUDA graph can capture
//    it (CTranslate2's current stream; llm.c passes it to every launcher).
//  - Memory comes from CUDA's stream-ordered caching pool (cudaMallocAsync on
//    that stream, from the device's default pool, whose release threshold is
//    raised so that freed blocks stay cached): after the first forward no
//    allocation reaches the driver, and a free is queued after the work that
//    used the block. Never managed memory.
//  - Copies to the host wait for the stream; other copies are queued on it.
// In a CPU-only build every CUDA request is a gpt2q::Error.
#include <cstddef>
#include <string>

#include "core/dtype.h"

namespace gpt2q {

// True when this build has the CUDA backend (GPT2Q_CUDA), whether or not a
// GPU is present at run time.
bool cuda_built();

// True when a CUDA device can be used (a CUDA build, a driver, a device);
// otherwise `why` (if given) says why. Never throws.
bool cuda_device_usable(std::string* why = nullptr);

// `bytes` on `device` (not Device::CPU: host memory is Storage's own aligned
// heap), zero-filled when asked. Throws Error when the device is missing or
// full ("out of memory: N bytes requested, F of T free").
void* device_allocate(size_t bytes, Device device, bool zero_fill);
inline void* device_allocate_zeroed(size_t bytes, Device device) { return device_allocate(bytes, device, true); }
// Frees what device_allocate returned (queued on the calling thread's
// stream). Never throws (destructors call it).
void device_free(void* p, Device device) noexcept;
// Copies `bytes` from src on src_device to dst on dst_device (any pair, host
// to host included). A copy to the host returns once the data is there (it
// waits for the work queued before it); other copies are queued.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// Sets `bytes` at dst on `device` to zero (on a GPU, queued on the stream).
void zero_bytes(void* dst, Device device, size_t bytes);

// The calling thread's CUDA stream (a cudaStream_t), created on first use.
void* cuda_stream();
// Waits for the calling thread's stream; a fault inside a kernel queued
// before is reported here as an Error.
void device_synchronize(Device device);

// Chooses the CUDA device of this process (cuda:N; before any other CUDA
// call). Error when there is no such device.
void select_cuda_device(int index);

// What the caching pool holds on `device`. used: bytes of live allocations
// (what torch.cuda.memory_allocated counts); reserved: what the pool took
// from the driver; free / total: the device's (cudaMemGetInfo).
struct DeviceMemoryStats {
  size_t used = 0, peak_used = 0, reserved = 0, peak_reserved = 0, free = 0, total = 0;
};
DeviceMemoryStats device_memory_stats(Device device);
// Starts a new peak (peak_used = used).
void reset_device_memory_peak(Device device);
// Returns the pool's cached, unused blocks to the driver.
void release_cached_device_memory(Device device);
// "1.23 GiB" style, for messages.
std::string format_bytes(size_t bytes);

}  // namespace gpt2q
