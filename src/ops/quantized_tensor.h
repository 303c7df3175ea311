#pragma once
// A packed quantized weight held as Tensors: the format descriptor
// (backend/quant_format.h) plus the codes and their scales, each part a
// Tensor, so that to_device moves it like any tensor and the bytes held are
// the parts' bytes. ops::quant_linear and ops::gather_rows run it on the
// device it lives on. quant/ makes these (quantize, read a checkpoint) and
// keeps the formats' definitions; layers/ holds them.
#include <string>

#include "backend/quant_format.h"
#include "core/tensor.h"

namespace gpt2q {

struct QuantizedTensor {
  qformat::Format format;
  Tensor codes;          // blockwise4: U8 [ceil(n / 2)]; int8_affine, llm_int8: I8 [out, in]; group_int: qweight I32
  Tensor scales;         // F32: absmax [blocks] (undefined when nested) | scale [1 or out] | SCB [out];
                         // group_int: F16 [groups, out]
  Tensor zero_points;    // I32 [1 or out] (int8_affine, not symmetric); group_int: qzeros I32 [groups, out·bits/32]
  Tensor g_idx;          // I32 [in] (group_int)
  Tensor nested_codes;   // U8 [blocks] (blockwise4, nested)
  Tensor nested_scales;  // F32 [ceil(blocks / 256)] (blockwise4, nested)
  Tensor row_sums;       // I32 [out] (llm_int8)

  bool defined() const { return codes.defined(); }
  Device device() const { return codes.device(); }
  int64_t out() const { return format.out; }
  int64_t in() const { return format.in; }
  // Bytes held: every part, plus the nested offset (4 bytes) when nested;
  // the same count as the formats' own bytes() in quant/.
  size_t bytes() const;
  // "int8-tensor", "int8-channel-sym", "llm-int8", "nf4", "fp4-dq", ...
  std::string format_name() const;
  // Raw pointers to the parts, for the kernels of the device it lives on.
  qformat::WeightView view() const;
  // Checks that the parts have the dtypes and sizes the format implies
  // (gpt2q::Error naming `what` otherwise).
  void validate(const std::string& what) const;
};

// `w` on `device`: shared parts when it is already there, else copies.
QuantizedTensor to_device(const QuantizedTensor& w, Device device);

}  // namespace gpt2q
