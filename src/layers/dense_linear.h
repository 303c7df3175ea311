#pragma once
// The dense Linear: a weight in GPT-2's Conv1D layout [in, out] (so y = x·W
// is a plain row-major GEMM) of F32, F16 or BF16, and an F32 bias [out]
// (may be undefined). On the CPU and with an F32 placement on CUDA the
// weight stays as stored (a view of the checkpoint mapping where it can be:
// the layer holds the bytes the file stores; a 16-bit one is converted
// exactly for each product, backend/cpu/half_gemm.h); an F16 / BF16
// placement on CUDA holds it in that dtype, converted once. A BF16 placement
// on the CPU rounds it to bf16 once and holds only that, packed for the bf16
// products (ops::linear_bf16; backend/cpu/bf16_linear.h has the numerics).
#include <memory>

#include "layers/linear.h"

namespace gpt2q {

class DenseLinear final : public Linear {
 public:
  // weight_in_out [in, out] F32 / F16 / BF16, bias [out] F32 or undefined,
  // both on the placement's device (make_dense_linear places them).
  DenseLinear(Tensor weight_in_out, Tensor bias, Placement placement);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue = {}) const override;
  size_t bytes() const override;
  std::string format() const override;
  const Placement& placement() const override { return placement_; }
  // The weight as stored / placed; undefined with a CPU BF16 placement,
  // whose weight is packed_bf16().
  const Tensor& weight() const { return w_; }
  const Tensor& packed_bf16() const { return w_bf16_; }

 private:
  Tensor w_, b_;
  Tensor w_bf16_;  // CPU, compute BF16: ops::pack_linear_bf16 of the weight
  int64_t in_ = 0, out_ = 0;
  // On CUDA with F16 / BF16 activations: the bias in that dtype too, for the
  // products whose output has it (cuBLASLt adds a bias of the output's type;
  // the residual adds keep the fp32 one).
  Tensor b_out_;
  Placement placement_;
};

// A DenseLinear on `placement` from host (or device) tensors: moved to the
// device, and converted to the compute dtype where the placement asks for it.
// Errors name `what`.
std::unique_ptr<DenseLinear> make_dense_linear(const Tensor& weight_in_out, const Tensor& bias,
                                               const Placement& placement = {}, const std::string& what = "linear");

// The bias copy a layer on `placement` keeps for 16-bit outputs (undefined
// where none is needed): `bias` (F32, on the device) in the activations' dtype.
Tensor activation_dtype_bias(const Tensor& bias, const Placement& placement);

// `t` as the placement holds a dense weight: on its device; in its compute
// dtype on CUDA with F16 / BF16 (F32 keeps the stored dtype, and so does
// the CPU). Shared, not copied, when nothing changes.
Tensor place_dense_weight(const Tensor& t, const Placement& placement);

}  // namespace gpt2q
