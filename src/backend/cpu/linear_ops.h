#pragma once
// The linear-layer ops on the CPU, from the device-neutral argument structs
// of backend/linear_args.h (what ops.cpp fills for every device): dense
// products with fp32 or 16-bit weights, packed quantized products, and row
// gathers from tables of any kind, each with its epilogue. Activations are
// fp32 on the CPU (a BF16 compute dtype is internal to the quantized
// kernels). The reference:: twins run the scalar kernels.
#include "backend/linear_args.h"

namespace gpt2q::cpu {

void linear_op(const backend::LinearArgs& a);
void quant_linear_op(const backend::QuantLinearArgs& a);
void gather_rows_op(const backend::GatherArgs& a);

namespace reference {
void linear_op(const backend::LinearArgs& a);
void quant_linear_op(const backend::QuantLinearArgs& a);
void gather_rows_op(const backend::GatherArgs& a);
}  // namespace reference

}  // namespace gpt2q::cpu
