// The fp32 dense Linear: GPT-2's Conv1D weight [in, out] used as is (a view
// of the checkpoint mapping when stored in fp32), y = x·W + b by sgemm.
#include "model/linear.h"

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt2q {

namespace {

class DenseLinear final : public Linear {
 public:
  DenseLinear(Tensor w, Tensor b) : w_(std::move(w)), b_(std::move(b)) {}
  int64_t in_features() const override { return w_.dim(0); }
  int64_t out_features() const override { return w_.dim(1); }
  void forward(const float* x, int64_t rows, float* y) const override {
    // Dispatch point for the weight's device (raw pointers carry none).
    switch (w_.device()) {
      case Device::CPU:
        cpu::linear(x, rows, w_.dim(0), w_.data<float>(), b_.defined() ? b_.data<float>() : nullptr, w_.dim(1), y);
        return;
      default:
        fail("linear: no implementation for device {} in this build", device_name(w_.device()));
    }
  }
  size_t bytes() const override { return w_.nbytes() + (b_.defined() ? b_.nbytes() : 0); }
  std::string format() const override { return "f32"; }

 private:
  Tensor w_, b_;
};

}  // namespace

std::unique_ptr<Linear> make_dense_linear(Tensor weight_in_out, Tensor bias) {
  if (!weight_in_out.defined() || weight_in_out.ndim() != 2)
    fail("dense linear: weight must be 2-D [in, out]");
  if (weight_in_out.dtype() != DType::F32)
    fail("dense linear: weight must be F32, got {}", dtype_name(weight_in_out.dtype()));
  if (bias.defined()) {
    if (bias.dtype() != DType::F32) fail("dense linear: bias must be F32, got {}", dtype_name(bias.dtype()));
    if (bias.numel() != weight_in_out.dim(1))
      fail("dense linear: bias {} does not match weight {}", shape_str(bias.shape()), shape_str(weight_in_out.shape()));
  }
  return std::make_unique<DenseLinear>(std::move(weight_in_out), std::move(bias));
}

}  // namespace gpt2q
