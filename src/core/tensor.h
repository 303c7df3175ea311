#pragma once
// Tensor = shape + dtype + device + a view into shared Storage.
// Storage is either owned (64-byte aligned heap memory) or borrowed from a
// memory-mapped checkpoint, kept alive by a shared_ptr. Tensors are always
// contiguous, row-major: the layouts gpt2q computes with never need strides,
// and contiguity keeps every kernel simple.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace gpt2q {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3]"

class Storage {
 public:
  // Zero-filled unless asked not to (device memory only; host memory is
  // always zeroed). Host memory is 64-byte aligned; CUDA memory comes from
  // the caching pool (core/device_memory.h; an Error in a CPU-only build).
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device = Device::CPU, bool zero_fill = true);
  // Borrow `bytes` at `data`; `owner` keeps the memory (e.g. a mapping) alive.
  static std::shared_ptr<Storage> borrow(void* data, size_t bytes, std::shared_ptr<const void> owner,
                                         Device device = Device::CPU);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  Device device() const { return device_; }
  bool owned() const { return owned_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_ = Device::CPU;
  bool owned_ = false;
  std::shared_ptr<const void> owner_;
};

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(Shape shape, DType dtype, Device device = Device::CPU);  // zero-filled
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& v, Shape shape);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t offset() const { return offset_; }

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_; }
  // Typed access; checks that T matches the dtype.
  template <typename T>
  T* data() const;
  template <typename T>
  std::span<T> span() const { return {data<T>(), static_cast<size_t>(numel())}; }

  // Same bytes, new shape (numel must match).
  Tensor view(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Deep copy into owned memory on the same device.
  Tensor clone() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::F32;
};

// `t` on `device`: t itself (shared storage, no copy) when it is already
// there, else a copy (a copy to the host waits for queued device work).
Tensor to_device(const Tensor& t, Device device);

template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int8_t>() { return DType::I8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::I16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
// F16/BF16 are accessed as uint16_t bit patterns.
template <> constexpr DType dtype_of<uint16_t>() { return DType::F16; }

template <typename T>
T* Tensor::data() const {
  constexpr DType want = dtype_of<std::remove_const_t<T>>();
  bool ok = dtype_ == want || (want == DType::F16 && dtype_ == DType::BF16);
  GPT2Q_CHECK(ok, "tensor of {} accessed as {}", dtype_name(dtype_), dtype_name(want));
  GPT2Q_CHECK(device() == Device::CPU, "host access to a {} tensor", device_name(device()));
  return reinterpret_cast<T*>(raw());
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& v, Shape shape) {
  GPT2Q_CHECK(shape_numel(shape) == static_cast<int64_t>(v.size()), "from_vector: {} values for shape {}",
              v.size(), shape_str(shape));
  Tensor t = empty(std::move(shape), dtype_of<T>());
  std::copy(v.begin(), v.end(), t.data<T>());
  return t;
}

}  // namespace gpt2q
