#pragma once
// The `quantization_config` block of a quantized checkpoint's config.json.
//
// nf4 / fp4 / llm-int8 are written the way transformers writes a
// BitsAndBytesConfig (quant_method "bitsandbytes", load_in_4bit / load_in_8bit,
// bnb_4bit_quant_type, bnb_4bit_use_double_quant, llm_int8_threshold, ...), so
// that transformers + bitsandbytes load our checkpoints. bnb has no per-tensor
// int8 format, so int8-tensor gets gpt2q's own block:
//   {"quant_method": "gpt2q", "method": "int8-tensor", "symmetric": false,
//    "per_channel": false, "weight_layout": "out_in", "modules_to_not_convert": [...]}
// Block sizes are per tensor (bnb keeps them in each tensor's quant_state).
// rtn / gptq (group-wise integers, quant/gptq.h) are written as transformers
// writes a GPTQConfig (quant_method "gptq", bits, group_size (-1: per
// channel), sym, desc_act, damp_percent, checkpoint_format "gptq"), so that
// transformers + optimum load them; gpt2q_method says which of the two made
// the codes (both store the same layout).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "quant/blockwise4.h"
#include "quant/int8_affine.h"

namespace gpt2q::quant {

enum class QuantMethod { int8_tensor, llm_int8, nf4, fp4, rtn, gptq };

// torch's names for the compute dtypes a quantization_config may name.
// "bf16"/"bfloat16" -> BF16, "fp32"/"float32" -> F32; anything else -> nullopt.
std::optional<DType> parse_compute_dtype(std::string_view name);
std::string_view torch_dtype_name(DType compute);  // F32 -> "float32", BF16 -> "bfloat16"

std::string_view quant_method_name(QuantMethod m);  // "int8-tensor", "llm-int8", "nf4", "fp4", "rtn", "gptq"
std::optional<QuantMethod> parse_quant_method(std::string_view name);
bool is_4bit(QuantMethod m);
bool is_group_int(QuantMethod m);  // rtn / gptq: the GPTQ checkpoint layout
Code4 code4_of(QuantMethod m);  // nf4 / fp4 only

struct QuantizationConfig {
  QuantMethod method = QuantMethod::nf4;
  // int8-tensor
  Int8Scheme int8_scheme = Int8Scheme::affine;
  Int8Granularity int8_granularity = Int8Granularity::per_tensor;
  // llm-int8 (transformers' llm_int8_threshold; 0 turns the decomposition off)
  float llm_int8_threshold = 6.0f;
  // nf4 / fp4: what quantize used. Loading takes each tensor's own from its
  // quant_state; checkpoint_quantization() sets this to their common value (0: mixed).
  int64_t blocksize = 64;
  bool double_quant = false;
  // rtn / gptq (GPTQConfig's bits, group_size, sym, desc_act, damp_percent)
  int bits = 4;
  int64_t group_size = 128;  // -1: one group per output row
  bool sym = false;
  bool desc_act = false;       // act-order (gptq)
  double damp_percent = 0.01;  // gptq
  // nf4 / fp4: bnb_4bit_compute_dtype; int8-tensor: gpt2q's compute_dtype.
  // "float32", "bfloat16" or "float16" (torch's names); see compute().
  std::string compute_dtype = "float32";
  // Module names (HF, e.g. "transformer.h.0.attn.c_attn", "lm_head") left
  // unquantized: bnb's llm_int8_skip_modules, gpt2q's modules_to_not_convert.
  std::vector<std::string> skip_modules;

  // The arithmetic of the quantized linears at 16 rows and more
  // (backend/cpu/dequant_gemm.h): BF16 for "bfloat16" (int8-tensor, nf4, fp4), else
  // F32 — "float16" too: the CPU has no fp16 dot product, so gpt2q computes
  // in fp32 there (closer to the weights than fp16 would be).
  DType compute() const;

  nlohmann::json to_json() const;
  // `source` names config.json in errors. Unknown quant_method, quant type or
  // a contradictory block (both or neither of load_in_4bit / load_in_8bit)
  // is an Error.
  static QuantizationConfig from_json(const nlohmann::json& j, const std::string& source);
  // "nf4 (blocksize 64, double quant)", for reports.
  std::string describe() const;
};

}  // namespace gpt2q::quant
