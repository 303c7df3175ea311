#pragma once
// The GPTQ checkpoint layout that transformers (optimum / AutoGPTQ,
// quantization_config.quant_method = "gptq", checkpoint_format "gptq", the
// original v1) reads, for a linear with W [out, in]:
//   qweight  I32 [in · bits / 32, out]  the codes along the input dimension,
//            32 / bits per word from the least significant bits up (2, 4, 8
//            bits); 3 bits: 32 codes in 3 words, 10 + 1 + 10 + 1 + 10 with
//            the 11th and 22nd code split across words (AutoGPTQ's pack)
//   qzeros   I32 [groups, out · bits / 32]  zero − 1, packed the same way
//            along the output dimension (v1 stores the zero point minus one)
//   scales   F16 [groups, out]
//   g_idx    I32 [in]  the group of each input column
//   value    = scale · (code − (stored zero + 1))
// Both in · bits and out · bits must be multiples of 32.
// tools/gptq_dequant.py reads these tensors with numpy from this definition
// alone and gets gpt2q's weights back.
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "ops/quantized_tensor.h"
#include "quant/gptq.h"

namespace gpt2q::quant {

struct GptqTensors {
  Tensor qweight, qzeros, scales, g_idx;
};

// Errors name `what` (e.g. the module) when a dimension does not pack.
GptqTensors pack_gptq(const GroupQuantized& q, const std::string& what);
// The codes, zero points, scales (fp16 values as float) and groups back;
// every tensor's dtype and shape is checked against bits, out and in.
GroupQuantized unpack_gptq(const GptqTensors& t, int bits, int64_t out, int64_t in, bool symmetric,
                           const std::string& what);

// The packed weight (backend/quant_format.h's group_int scheme) that
// ops::quant_linear runs: the layout's four tensors as they are.
QuantizedTensor to_quantized_tensor(const GptqTensors& t, int bits, int64_t out, int64_t in, int64_t group_size,
                                    bool symmetric, const std::string& what);
inline QuantizedTensor to_quantized_tensor(const GroupQuantized& q, const std::string& what) {
  return to_quantized_tensor(pack_gptq(q, what), q.bits, q.out, q.in, q.group_size, q.symmetric, what);
}

// The packing of one line of codes (2 / 3 / 4 / 8 bits) into 32-bit words,
// and back: n codes -> n · bits / 32 words.
void pack_codes(const uint32_t* codes, int64_t n, int bits, uint32_t* words);
void unpack_codes(const uint32_t* words, int64_t n, int bits, uint32_t* codes);

}  // namespace gpt2q::quant
