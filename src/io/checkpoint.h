#pragma once
// A Hugging Face GPT-2 checkpoint directory: config.json plus model.safetensors
// or a sharded model.safetensors.index.json. Tensor names are canonicalised:
// the "transformer." prefix is dropped ("h.0.attn.c_attn.weight", "wte.weight"),
// heads keep theirs ("lm_head.weight", "score.weight").
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/config.h"
#include "io/safetensors.h"

namespace gpt2q {

enum class ModelKind { Base, CausalLM, SequenceClassification };

std::string_view model_kind_name(ModelKind kind);    // "Base", "CausalLM", "SequenceClassification"
std::string_view architecture_name(ModelKind kind);  // "GPT2Model", "GPT2LMHeadModel", ...

// A tensor a checkpoint must hold, by canonical name, with the shape its
// config implies. `dims` says where the shape comes from ("[vocab_size,
// n_embd]"); `component` groups it for size reports (tensor_component).
struct TensorSpec {
  std::string name;
  Shape shape;
  std::string dims;
  std::string component;
};
// In transformers' order: wte, wpe, h.0 ... h.{n_layer-1}, ln_f, then
// score.weight [num_labels, n_embd] for classifiers. lm_head.weight is
// optional (tied to wte) and not listed. Classifiers need config.id2label set.
std::vector<TensorSpec> expected_tensors(const GPT2Config& config, ModelKind kind);
// "wte", "wpe", "attn", "mlp", "ln" (ln_1/ln_2 of blocks), "ln_f", "lm_head",
// "score"; "" for a name that is not part of GPT-2.
std::string tensor_component(std::string_view canonical_name);

// Quantized checkpoints (issue 3) store a quantized weight MODULE.weight as
// U8 / I8 plus quantization-state tensors named as transformers +
// bitsandbytes write them: MODULE.weight.{absmax, quant_map, nested_absmax,
// nested_quant_map, quant_state.bitsandbytes__nf4, quant_state.bitsandbytes__fp4},
// MODULE.{SCB, weight_format}, and gpt2q's MODULE.{weight_scale, weight_zero_point};
// GPTQ's layout (transformers' quant_method "gptq") stores no MODULE.weight
// but MODULE.{qweight, qzeros, scales, g_idx}, all owned by MODULE.weight.
// The weight such a tensor belongs to ("h.0.attn.c_attn.weight"), or "".
std::string quant_state_owner(std::string_view canonical_name);

struct Checkpoint {
  std::filesystem::path dir;
  GPT2Config config;
  ModelKind kind = ModelKind::CausalLM;
  bool had_transformer_prefix = false;
  std::map<std::string, Tensor> tensors;        // canonical name -> view (dtype as stored)
  std::map<std::string, std::string> source;    // canonical name -> file it came from
  std::vector<SafetensorsFile> files;           // keeps the mappings alive
  // config.json's `quantization_config` (null when the checkpoint is not
  // quantized) and the weights stored quantized (dtype U8 / I8). Their
  // quantization state is in `tensors` too; src/quant reads and checks it.
  // A weight in GPTQ's layout is in quantized_weights but not in `tensors`.
  nlohmann::json quantization_config;
  std::set<std::string> quantized_weights;

  // Loads and checks against config: every required tensor present with the
  // right shape and a float dtype (F32/F16/BF16); lm_head.weight [V, C]
  // allowed for CausalLM; HF's attention-mask buffers (h.N.attn.bias,
  // h.N.attn.masked_bias) dropped; any other tensor is an Error (it means the
  // config and the weights disagree, e.g. more layers than n_layer).
  // A classifier whose config.json names no labels gets transformers'
  // default, two labels LABEL_0 and LABEL_1.
  // With a `quantization_config`, a 2-D weight may be stored as U8 / I8 (its
  // shape is then the quantized layout's, checked by src/quant), or replaced
  // by MODULE.qweight (GPTQ), together with
  // its quantization state (quant_state_owner); the state of a weight that is
  // not stored quantized, or any of it without a quantization_config, is an Error.
  static Checkpoint load(const std::filesystem::path& dir);

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Error "DIR: missing tensor NAME" when absent.
  const Tensor& get(const std::string& name) const;
  // As fp32 (converted from F16/BF16 when stored so; a view when already F32).
  Tensor get_f32(const std::string& name) const;
  // Sum of bytes of all stored tensors.
  size_t stored_bytes() const;
  bool quantized() const { return !quantization_config.is_null(); }
};

// Writes a checkpoint dir as transformers lays it out (config.json and
// model.safetensors with the "transformer." prefix for LM/classifier models).
// Creates `dir`; the tensors are checked like Checkpoint::load checks them;
// config.architectures is set from `kind` and config.dtype from wte's dtype.
void save_checkpoint(const std::filesystem::path& dir, const GPT2Config& config, ModelKind kind,
                     const std::vector<std::pair<std::string, Tensor>>& canonical_tensors);

// F16/BF16/F32 tensor -> new fp32 tensor (or the same one when already F32).
Tensor to_f32(const Tensor& t);

}  // namespace gpt2q
