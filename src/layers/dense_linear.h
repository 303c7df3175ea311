#pragma once
// The dense Linear: a weight stored in GPT-2's Conv1D layout [in, out] of
// F32, F16 or BF16, and an F32 bias [out] (may be undefined).
// - On the CPU the weight stays as stored (a view of the checkpoint mapping
//   where it can be: the layer holds the bytes the file stores; a 16-bit one
//   is converted exactly for each product, backend/cpu/half_gemm.h), and
//   y = x·W is a plain row-major GEMM. A BF16 placement rounds it to bf16
//   once and holds only that, packed for the bf16 products
//   (ops::linear_bf16; backend/cpu/bf16_linear.h has the numerics).
// - On CUDA it is held transposed, [out, in] (ops::linear_nt): both GEMM
//   operands contiguous along in (cuBLASLt's TN case, the layout its fastest
//   kernels and the quantized weights use) and each output's weights one
//   contiguous run for the few-row GEMV (dense_gemv.h). An F16 / BF16
//   placement holds it in that dtype, converted once; F32 keeps the stored
//   dtype. Transposing is exact: the same numbers, in another order.
#include <memory>

#include "layers/linear.h"

namespace gpt2q {

class DenseLinear final : public Linear {
 public:
  // weight F32 / F16 / BF16 as the placement holds it ([in, out] on the CPU,
  // [out, in] on CUDA: place_dense_linear_weight), bias [out] F32 or
  // undefined, both on the placement's device (make_dense_linear places them).
  DenseLinear(Tensor weight, Tensor bias, Placement placement)
      : DenseLinear(std::move(weight), std::move(bias), placement, placement.device != Device::CPU) {}
  // Over a weight kept in the Conv1D layout [in, out] on every device
  // (ops::linear; cuBLASLt on CUDA), shared, not copied: the training
  // pass's layers, which must see their parameters' in-place updates.
  // fp32 placements only.
  static std::unique_ptr<DenseLinear> over_in_out(Tensor weight_in_out, Tensor bias, Placement placement);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue = {}) const override;
  size_t bytes() const override;
  std::string format() const override;
  const Placement& placement() const override { return placement_; }
  // The weight as placed ([in, out] on the CPU, [out, in] on CUDA);
  // undefined with a CPU BF16 placement, whose weight is packed_bf16().
  const Tensor& weight() const { return w_; }
  const Tensor& packed_bf16() const { return w_bf16_; }

 private:
  Tensor w_, b_;
  DenseLinear(Tensor weight, Tensor bias, Placement placement, bool out_in);
  Tensor w_bf16_;  // CPU, compute BF16: ops::pack_linear_bf16 of the weight
  int64_t in_ = 0, out_ = 0;
  bool out_in_ = false;  // w_ is [out, in] (on CUDA, except over_in_out's)
  Placement placement_;
};

// A DenseLinear on `placement` from host (or device) tensors: moved to the
// device, and converted to the compute dtype where the placement asks for it.
// Errors name `what`.
std::unique_ptr<DenseLinear> make_dense_linear(const Tensor& weight_in_out, const Tensor& bias,
                                               const Placement& placement = {}, const std::string& what = "linear");

// `t` as the placement holds a dense weight: on its device; in its compute
// dtype on CUDA with F16 / BF16 (F32 keeps the stored dtype, and so does
// the CPU). Shared, not copied, when nothing changes.
Tensor place_dense_weight(const Tensor& t, const Placement& placement);
// A linear's weight w [in, out] as DenseLinear holds it: place_dense_weight's
// on the CPU; on CUDA transposed to [out, in] as well (on the host, with the
// conversion, before the one copy to the device).
Tensor place_dense_linear_weight(const Tensor& w_in_out, const Placement& placement);

}  // namespace gpt2q
