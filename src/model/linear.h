#pragma once
// A linear layer y = x·W + b behind one interface, so that quantized weight
// formats (int8, LLM.int8, NF4/FP4, issue 3) plug into the same model code.
// Activations are fp32 [rows, in] -> [rows, out], row-major.
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace gpt2q {

class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // y[rows, out] = x[rows, in] · W + b (overwrites y).
  virtual void forward(const float* x, int64_t rows, float* y) const = 0;
  // Bytes held for weight, bias and any quantization state.
  virtual size_t bytes() const = 0;
  virtual std::string format() const = 0;  // "f32", "int8-tensor", "nf4", ...
};

// fp32 weights in GPT-2's Conv1D layout [in, out] (so y = x·W is a plain
// row-major GEMM), bias [out] (may be undefined).
std::unique_ptr<Linear> make_dense_linear(Tensor weight_in_out, Tensor bias);

}  // namespace gpt2q
