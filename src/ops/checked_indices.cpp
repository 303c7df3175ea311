#include "ops/checked_indices.h"

#include "core/device_memory.h"
#include "core/error.h"

namespace gpt2q::ops {

namespace {

void check_range(const std::vector<int64_t>& values, int64_t bound) {
  for (int64_t v : values)
    if (v < 0 || v >= bound) fail("index {} is out of range for a table of {} rows", v, bound);
}

}  // namespace

CheckedIndices::CheckedIndices(const std::vector<int64_t>& values, int64_t bound, Device device) : bound_(bound) {
  if (values.empty()) fail("checked indices: no indices");
  check_range(values, bound);
  indices_ = Tensor::empty({static_cast<int64_t>(values.size())}, DType::I64, device);
  copy_bytes(indices_.raw(), device, values.data(), Device::CPU, values.size() * sizeof(int64_t));
}

void CheckedIndices::assign(const std::vector<int64_t>& values) {
  if (static_cast<int64_t>(values.size()) != size())
    fail("checked indices: {} values for a buffer of {}", values.size(), size());
  check_range(values, bound_);
  copy_bytes(indices_.raw(), indices_.device(), values.data(), Device::CPU, values.size() * sizeof(int64_t));
}

}  // namespace gpt2q::ops
