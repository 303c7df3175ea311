#pragma once
// Argument checks and device dispatch shared by the op entry points
// (ops.cpp, ops_backward.cpp). Internal to the ops layer.
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/device_memory.h"
#include "core/tensor.h"

namespace gpt2q::ops::detail {

// The one place that knows which devices have kernels.
// For ops with a kernel set per device (a struct of static kernels with the
// same signatures, e.g. FastCpu and FastCuda in ops.cpp): calls
// run(CpuSet{}) or run(CudaSet{}) by device, so one generic lambda serves
// both. CudaSet = void: no CUDA kernels (a CPU-only build, or the scalar
// reference), and CUDA tensors are an Error.
template <typename CpuSet, typename CudaSet, typename Run>
inline void dispatch_kernels(const char* op, Device device, Run&& run) {
  switch (device) {
    case Device::CPU:
      run(CpuSet{});
      return;
    case Device::CUDA:
      if constexpr (!std::is_void_v<CudaSet>) {
        run(CudaSet{});
        return;
      }
      break;
  }
  if (device == Device::CUDA && cuda_built())  // CudaSet void in a CUDA build: the reference kernels
    fail("{}: the scalar reference runs on CPU tensors only, got {} tensors", op, device_name(device));
  fail("{}: no implementation for device {} in this build", op, device_name(device));
}

// A kernel family: which set of kernels runs on which device (Cuda = void:
// none). ops names its families with it (kernel_sets.h, ops_backward.cpp).
template <typename CpuSet, typename CudaSet>
struct KernelFamily {
  using Cpu = CpuSet;
  using Cuda = CudaSet;
};

// Typed pointer to a tensor's data on whichever device it lives (Tensor::data
// is for host access only). For kernels that dispatch_kernels has matched to
// the tensor's device.
template <typename T>
inline T* device_data(const Tensor& t) {
  GPT2Q_CHECK(t.dtype() == dtype_of<T>(), "tensor of {} accessed as {}", dtype_name(t.dtype()),
              dtype_name(dtype_of<T>()));
  return static_cast<T*>(t.raw());
}

inline void require_f32(const char* op, const char* what, const Tensor& t) {
  if (!t.defined()) fail("{}: {} is undefined", op, what);
  if (t.dtype() != DType::F32) fail("{}: {} must be F32, got {}", op, what, dtype_name(t.dtype()));
}

// F32, F16 or BF16 (what the CUDA kernels take; the CPU ones check for F32).
inline void require_float_type(const char* op, const char* what, const Tensor& t) {
  if (!t.defined()) fail("{}: {} is undefined", op, what);
  if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16)
    fail("{}: {} must be F32, F16 or BF16, got {}", op, what, dtype_name(t.dtype()));
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

// Token ids (I32) and positions (I64) for the token and position tables
// `wte`, `wpe` ([vocab, C], [n_positions, C]; forward tables or their
// gradients): checks the dtypes, that the tables fit, and one position per id.
// Returns the row count.
inline int64_t check_embedding_args(const char* op, const Tensor& ids, const Tensor& positions, const Tensor& wte,
                                    const Tensor& wpe) {
  if (ids.dtype() != DType::I32 || positions.dtype() != DType::I64)
    fail("{}: ids must be I32 and positions I64", op);
  if (wte.ndim() != 2 || wpe.ndim() != 2 || wte.dim(1) != wpe.dim(1))
    fail("{}: tables {} and {} do not fit", op, shape_str(wte.shape()), shape_str(wpe.shape()));
  const int64_t rows = ids.numel();
  if (positions.numel() != rows) fail("{}: {} ids but {} positions", op, rows, positions.numel());
  return rows;
}

// Every id in [0, vocab) and position in [0, n_positions).
inline void check_embedding_indices(const int32_t* id, const int64_t* pos, int64_t rows, int64_t vocab,
                                    int64_t n_positions) {
  for (int64_t r = 0; r < rows; ++r) {
    if (id[r] < 0 || id[r] >= vocab) fail("token id {} is out of range for a vocabulary of {}", id[r], vocab);
    if (pos[r] < 0 || pos[r] >= n_positions)
      fail("position {} is out of range: the model has n_positions = {}", pos[r], n_positions);
  }
}

// qkv [B, T, 3C] split over n_head heads.
struct QkvDims {
  int64_t batch, seq, embd, head_dim;
};
inline QkvDims check_qkv(const char* op, const Tensor& qkv, int64_t n_head) {
  if (qkv.ndim() != 3 || qkv.dim(2) % 3 != 0) fail("{}: qkv must be [B, T, 3C], got {}", op, shape_str(qkv.shape()));
  const int64_t C = qkv.dim(2) / 3;
  if (n_head <= 0 || C % n_head != 0) fail("{}: n_head {} does not divide n_embd {}", op, n_head, C);
  return {qkv.dim(0), qkv.dim(1), C, C / n_head};
}

// An attention key mask, when given: U8 [batch, >= min_cols].
inline void check_key_mask(const char* op, const Tensor& key_mask, int64_t batch, int64_t min_cols) {
  if (!key_mask.defined()) return;
  if (key_mask.dtype() != DType::U8 || key_mask.ndim() != 2 || key_mask.dim(0) != batch || key_mask.dim(1) < min_cols)
    fail("{}: key mask must be U8 [{}, >= {}], got {} {}", op, batch, min_cols, dtype_name(key_mask.dtype()),
         shape_str(key_mask.shape()));
}

}  // namespace gpt2q::ops::detail
