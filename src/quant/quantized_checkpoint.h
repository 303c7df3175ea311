#pragma once
// How quantized weights are stored in a checkpoint, and read back packed.
//
// nf4 / fp4 and llm-int8 use the names and layouts transformers + bitsandbytes
// save (QuantState.as_dict(packed=True), Linear8bitLt._save_to_state_dict):
//   4-bit:   W            U8 [ceil(n/2), 1]  packed codes, element 2j in the high nibble
//            W.absmax     F32 [blocks]  (U8 codes [blocks] with double quant)
//            W.quant_map  F32 [16]      the NF4 / FP4 table
//            W.nested_absmax F32 [ceil(blocks/256)], W.nested_quant_map F32 [256]   (double quant)
//            W.quant_state.bitsandbytes__nf4 (or __fp4)  U8: JSON {quant_type,
//                blocksize, dtype, shape, nested_blocksize, nested_dtype, nested_offset}
//   llm-int8: W  I8 [out, in];  M.SCB  F32 [out];  M.weight_format  U8 [] = 0 (row-major)
// rtn / gptq (transformers' GPTQ layout, quant/gptq_format.h), with no M.weight:
//            M.qweight I32 [in·bits/32, out];  M.qzeros I32 [groups, out·bits/32];
//            M.scales F16 [groups, out];  M.g_idx I32 [in]
// gpt2q's int8-tensor:
//            W  I8 [out, in];  M.weight_scale  F32 [1 or out];  M.weight_zero_point  I32 [1 or out] (affine)
// where W = M.weight. Weights are in nn.Linear order [out, in]: GPT-2's Conv1D
// weights [in, out] are transposed first (as transformers does before handing
// them to bitsandbytes); wte, wpe, lm_head and score are already [rows, n_embd].
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "io/checkpoint.h"
#include "ops/quantized_tensor.h"
#include "quant/blockwise4.h"
#include "quant/gptq.h"
#include "quant/int8_affine.h"
#include "quant/llm_int8.h"
#include "quant/quant_config.h"

namespace gpt2q::quant {

// GroupQuantized (rtn / gptq) keeps its scales as the checkpoint stores
// them, fp16 values (group_quantized_as_stored), so that dequantize() is what
// a loaded checkpoint computes with.
using QuantizedWeight = std::variant<Int8Weight, LlmInt8Weight, Blockwise4Weight, GroupQuantized>;

// `q` with each scale rounded to fp16, as the GPTQ layout stores it.
GroupQuantized group_quantized_as_stored(GroupQuantized q);

// "int8-tensor", "int8-channel-sym", "llm-int8", "nf4", "fp4-dq", "int4-g128", ...
std::string quantized_format(const QuantizedWeight& w);
// Bytes the weight holds in memory (codes + scales + quant state; see each format's bytes()).
size_t quantized_bytes(const QuantizedWeight& w);
int64_t quantized_out(const QuantizedWeight& w);
int64_t quantized_in(const QuantizedWeight& w);
// The weight as Tensors (host memory, the vectors adopted without a copy),
// the form layers hold and ops run (ops/quantized_tensor.h).
QuantizedTensor to_quantized_tensor(QuantizedWeight w);
// The weight as fp32 [out, in], for error statistics and test references.
std::vector<float> dequantize(const QuantizedWeight& w);

// True for the Conv1D weights of the blocks (h.N.attn.c_attn.weight, ...),
// which are stored transposed.
bool is_conv1d_weight(std::string_view canonical_name);
// The [out, in] shape a quantized weight has, from the shape the config implies.
std::pair<int64_t, int64_t> quantized_out_in(std::string_view canonical_name, const Shape& spec_shape);

// The tensors (canonical names, owned memory) that store `w` as the weight
// `weight_name` ("h.0.attn.c_attn.weight"). `dtype` is the original dtype
// recorded in bnb's quant_state ("float16", "float32").
std::vector<std::pair<std::string, Tensor>> quantized_weight_tensors(const std::string& weight_name,
                                                                     const QuantizedWeight& w, std::string_view dtype);

// The parsed quantization_config of a quantized checkpoint (Error if it has none).
QuantizationConfig checkpoint_quantization(const Checkpoint& ck);

// Reads the quantized weight `weight_name` of `ck` into memory, packed, after
// checking every tensor of it against the config and the shape [out, in]:
// dtypes, sizes (packed bytes, absmax per block, one SCB per row), block size,
// quant type, the stored tables. Errors name the file and the tensor.
QuantizedWeight read_quantized_weight(const Checkpoint& ck, const QuantizationConfig& config,
                                      const std::string& weight_name, int64_t out, int64_t in);

// Sets the compute dtype (F32 or BF16) of an int8-tensor / nf4 / fp4
// checkpoint in its quantization_config (bnb_4bit_compute_dtype, or gpt2q's
// compute_dtype), as if quantize had written it: the run-time override of
// --compute-dtype. Error for an unquantized or llm-int8 checkpoint.
void set_compute_dtype(Checkpoint& ck, DType compute);

// Reads every quantized weight of `ck` (a full check; nothing is kept).
void validate_quantized_checkpoint(const Checkpoint& ck);

}  // namespace gpt2q::quant
