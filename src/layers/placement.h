#pragma once
// Where a model's layers live and how they compute, chosen once when the
// model loads (CTranslate2's device + compute type): every weight moves to
// the device once, in the form the compute dtype needs, and every forward
// then runs there.
#include <string>

#include "core/dtype.h"

namespace gpt2q {

struct Placement {
  Device device = Device::CPU;
  // CUDA: the dtype of the activations that the linears read and write, and
  // of the dense weights (F32 keeps them as stored: the exactness path; F16
  // or BF16 converts them once and runs the tensor cores with fp32 sums).
  // CPU: activations are always F32; BF16 here is the arithmetic of the
  // block projections' products from 16 rows: the quantized int8-tensor /
  // nf4 / fp4 kernels take theirs from the checkpoint's config
  // (quant_config.h), dense ones hold their weights in bf16
  // (dense_linear.h). Embeddings, LM head and attention stay fp32.
  DType compute = DType::F32;

  // The dtype of the hidden activations between layers (the residual stream
  // itself stays F32 everywhere).
  DType activations() const { return device == Device::CPU ? DType::F32 : compute; }
  std::string describe() const;  // "cpu", "cpu (bf16)", "cuda (bf16)", ...
};

}  // namespace gpt2q
