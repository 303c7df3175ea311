#pragma once
// Raw memory on devices other than the host: allocation, release and copies
// between any two devices. Storage (tensor.h) owns and frees device memory
// through these, which is why they live in core, the bottom layer, and not
// in backend/cuda above it: a Storage destructor must be able to free CUDA
// memory without core depending on a backend.
//
// In a GPT2Q_CUDA build, CUDA memory comes from plain cudaMalloc (never
// managed memory) on the current device, and copies are cudaMemcpy on the
// default stream, so a copy to the host waits for the device work queued
// before it. In a CPU-only build every CUDA request is a gpt2q::Error.
#include <cstddef>

#include "core/dtype.h"

namespace gpt2q {

// True when this build has the CUDA backend (GPT2Q_CUDA), whether or not a
// GPU is present at run time.
bool cuda_built();

// `bytes` of zero-filled memory on `device` (not Device::CPU: host memory is
// Storage's own aligned heap). Throws Error when the device is missing or full.
void* device_allocate_zeroed(size_t bytes, Device device);
// Frees what device_allocate_zeroed returned. Never throws (destructors call it).
void device_free(void* p, Device device) noexcept;
// Copies `bytes` from src on src_device to dst on dst_device (any pair,
// host to host included). Returns after the copy is complete as seen from
// the host for copies to the host; device-side copies are ordered on the
// default stream.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

}  // namespace gpt2q
