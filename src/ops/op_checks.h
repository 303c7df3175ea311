#pragma once
// Argument checks and device dispatch shared by the op entry points
// (ops.cpp, ops_backward.cpp). Internal to the ops layer.
#include <cstdint>
#include <initializer_list>

#include "core/tensor.h"

namespace gpt2q::ops::detail {

// The one place that knows which devices have kernels. A CUDA backend adds
// its case here (and a kernel set like FastCpu).
template <typename CpuFn>
inline void dispatch(const char* op, Device device, CpuFn&& on_cpu) {
  switch (device) {
    case Device::CPU:
      on_cpu();
      return;
    default:
      fail("{}: no implementation for device {} in this build", op, device_name(device));
  }
}

inline void require_f32(const char* op, const char* what, const Tensor& t) {
  if (!t.defined()) fail("{}: {} is undefined", op, what);
  if (t.dtype() != DType::F32) fail("{}: {} must be F32, got {}", op, what, dtype_name(t.dtype()));
}

inline void same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  Device d = (*ts.begin())->device();
  for (const Tensor* t : ts)
    if (t->defined() && t->device() != d)
      fail("{}: tensors on different devices ({} and {})", op, device_name(d), device_name(t->device()));
}

inline int64_t last_dim(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(-1); }
inline int64_t rows_of(const Tensor& t) {
  int64_t c = last_dim(t);
  return c == 0 ? 0 : t.numel() / c;
}

}  // namespace gpt2q::ops::detail
