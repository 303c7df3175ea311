#pragma once
// Post-training quantization of a whole checkpoint: `gpt2q quantize`.
//
// Which weights: by default the Linear weights inside the blocks
// (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj). `all_tensors` adds every
// other 2-D weight: wte (also the tied LM head), wpe, lm_head.weight when
// stored, score.weight; with fp16 / bf16 / fp32 it means every tensor.
// `include` globs (fnmatch, `*` crosses dots; matched against the canonical
// name "h.0.mlp.c_fc.weight" and the stored "transformer.h.0.mlp.c_fc.weight")
// replace the default set, choosing among all quantizable weights; `exclude`
// globs remove from it. Every other tensor is kept in `keep_dtype`.
// A glob that matches nothing, or an empty selection, is an Error.
// transformers + bitsandbytes load the nf4 / fp4 / llm-int8 checkpoints as
// long as only block projections are quantized (it never quantizes
// embeddings); int8-tensor and --all-tensors checkpoints are gpt2q's own.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/checkpoint.h"
#include "quant/gptq.h"

namespace gpt2q::quant {

struct QuantizeOptions {
  std::string method;  // int8-tensor, llm-int8, nf4, fp4, rtn, gptq (quantized); fp16, bf16, fp32 (cast)
  bool symmetric = false, per_channel = false;  // int8-tensor
  float threshold = 6.0f;                       // llm-int8
  int64_t block_size = 64;                      // nf4 / fp4
  bool double_quant = false;                    // nf4 / fp4
  // rtn / gptq: bits (2, 3, 4, 8), columns per group (-1: per channel),
  // symmetric (--symmetric); gptq: damping and act-order.
  int bits = 4;
  int64_t group_size = 128;
  double damp = 0.01;
  bool act_order = false;
  std::vector<std::string> include, exclude;
  bool all_tensors = false;
  DType keep_dtype = DType::F16;  // F16 or F32
  // int8-tensor / nf4 / fp4: the arithmetic the checkpoint asks for at 16
  // rows and more (QuantizationConfig::compute_dtype): F32 or BF16.
  DType compute_dtype = DType::F32;
};

// --keep-dtype's value: "fp16" -> F16, "fp32" -> F32; anything else is an Error.
DType parse_keep_dtype(const std::string& name);
// --compute-dtype's value: "fp32"/"float32" -> F32, "bf16"/"bfloat16" -> BF16; else an Error.
DType parse_compute_dtype_option(const std::string& name);
// Every method name quantize accepts, for help and errors.
const std::vector<std::string>& quantize_method_names();
// Error (naming the option) for a method / option combination that makes no sense.
void check_quantize_options(const QuantizeOptions& opt);

struct TensorQuantReport {
  std::string name;    // canonical
  std::string format;  // "nf4-dq", "int8-channel-sym", "llm-int8", "f16", "bf16", "f32"
  Shape shape;         // as in the source checkpoint
  int64_t numel = 0;
  size_t stored_bytes = 0;  // bytes of this tensor and its quantization state in the output file
  size_t held_bytes = 0;    // bytes the loaded weight holds in memory (quantized formats; casts: 0)
  double mse = 0, sqnr_db = 0, max_abs_error = 0;  // of the dequantized weight; sqnr_db is +inf when exact
};

struct QuantizeResult {
  Checkpoint checkpoint;                   // in memory (owned tensors); runs with GPT2Model::from_checkpoint
  std::vector<TensorQuantReport> tensors;  // the selected tensors, in checkpoint order
  std::vector<TensorQuantReport> kept;     // every other tensor (cast to keep_dtype)
};

// The weights `opt` selects (canonical names), checked as quantize_checkpoint checks them.
std::set<std::string> selected_weights(const Checkpoint& source, const QuantizeOptions& opt);

// `gptq`: the weights GPTQ made from calibration data (calib/gptq_blocks.h),
// by canonical name, one for every selected weight; the other methods take none.
QuantizeResult quantize_checkpoint(const Checkpoint& source, const QuantizeOptions& opt,
                                   const std::map<std::string, GroupQuantized>* calibrated = nullptr);

// Writes `q` (from quantize_checkpoint) as a checkpoint directory: config.json
// (with quantization_config), model.safetensors in transformers' names, and the
// tokenizer / generation files found in `copy_from` (none when empty). Atomic: everything goes
// into a temporary directory beside `out`, renamed to `out` at the end. `out`
// must not exist or be an empty directory.
void save_quantized_checkpoint(const Checkpoint& q, const std::filesystem::path& out,
                               const std::filesystem::path& copy_from);

}  // namespace gpt2q::quant
