#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "core/device_memory.h"

namespace gpt2q {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device device, bool zero_fill) {
  auto s = std::shared_ptr<Storage>(new Storage());
  if (device != Device::CPU) {
    s->data_ = device_allocate(bytes, device, zero_fill);
    s->size_ = bytes;
    s->device_ = device;
    s->owned_ = true;
    return s;
  }
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  s->data_ = std::aligned_alloc(64, rounded);
  if (!s->data_) fail("out of memory allocating {} bytes", bytes);
  std::memset(s->data_, 0, rounded);
  s->size_ = bytes;
  s->device_ = device;
  s->owned_ = true;
  return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, std::shared_ptr<const void> owner,
                                         Device device) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = data;
  s->size_ = bytes;
  s->device_ = device;
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() {
  if (!owned_) return;
  if (device_ == Device::CPU) {
    std::free(data_);
  } else {
    device_free(data_, device_);
  }
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  for (int64_t d : shape) GPT2Q_CHECK(d >= 0, "negative dimension in {}", shape_str(shape));
  Tensor t;
  t.storage_ = Storage::allocate(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype) {
  size_t need = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  GPT2Q_CHECK(storage && offset + need <= storage->size(), "tensor view {} at {} exceeds storage of {} bytes",
              shape_str(shape), offset, storage ? storage->size() : 0);
  Tensor t;
  t.storage_ = std::move(storage);
  t.offset_ = offset;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::view(Shape shape) const {
  GPT2Q_CHECK(shape_numel(shape) == numel(), "view {} of tensor {}", shape_str(shape), shape_str(shape_));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  GPT2Q_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice_rows({}, {}) of {}", begin,
              end, shape_str(shape_));
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  Tensor t = *this;
  t.offset_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  copy_bytes(t.raw(), device(), raw(), device(), nbytes());
  return t;
}

Tensor to_device(const Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return t;
  Tensor r = Tensor::empty(t.shape(), t.dtype(), device);
  copy_bytes(r.raw(), device, t.raw(), t.device(), t.nbytes());
  return r;
}

}  // namespace gpt2q
