#pragma once
// Row indices that were checked against a table's size on the host before
// they reached the device: what a gather takes when its indices must stay on
// the device (a captured CUDA graph reads them from one buffer, refilled
// between replays). An index is never checked by a kernel, so an index out of
// range is an Error here and never an out-of-bounds read there.
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace gpt2q::ops {

class CheckedIndices {
 public:
  CheckedIndices() = default;
  // values, each in [0, bound) (an Error otherwise, naming the first bad
  // one), as I64 [values.size()] on `device`.
  CheckedIndices(const std::vector<int64_t>& values, int64_t bound, Device device);
  // New values of the same count, checked, into the same device buffer.
  void assign(const std::vector<int64_t>& values);

  const Tensor& tensor() const { return indices_; }  // I64 [size] on the device
  int64_t size() const { return indices_.defined() ? indices_.numel() : 0; }
  int64_t bound() const { return bound_; }

 private:
  Tensor indices_;
  int64_t bound_ = 0;
};

}  // namespace gpt2q::ops
