#pragma once
// A temporary device buffer for one op (dequantized tiles, LLM.int8 codes):
// from the stream-ordered caching pool (core/device_memory.h), so it costs no
// driver call after the first use, and freed on the same stream when the op
// returns, after the work queued with it.
#include <cstddef>

#include "core/device_memory.h"

namespace gpt2q::cuda {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : p_(bytes ? device_allocate(bytes, Device::CUDA, false) : nullptr) {}
  ~DeviceBuffer() { device_free(p_, Device::CUDA); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_;
};

}  // namespace gpt2q::cuda
