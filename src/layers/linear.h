#pragma once
// A linear layer y = x·W + b behind one interface, so that every weight
// format (fp32 and 16-bit, int8, LLM.int8, NF4/FP4) plugs into the same model
// code. A layer only calls ops (ops/ops.h), never a backend, so it runs on
// whichever device its weights were placed on (placement.h).
// Activations: x [rows, in] -> y [rows, out], row-major, of the placement's
// activation dtype.
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "layers/placement.h"
#include "ops/ops.h"

namespace gpt2q {

class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // y = x · W + b, then the epilogue: an activation, or y += (the residual
  // add). Overwrites y otherwise.
  virtual void forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue = {}) const = 0;
  // Bytes held for weight, bias and any quantization state.
  virtual size_t bytes() const = 0;
  virtual std::string format() const = 0;  // "f32", "f16", "int8-tensor", "nf4-dq", "llm-int8", ...
  virtual const Placement& placement() const = 0;
};

}  // namespace gpt2q
