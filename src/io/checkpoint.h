#pragma once
// A Hugging Face GPT-2 checkpoint directory: config.json plus model.safetensors
// or a sharded model.safetensors.index.json. Tensor names are canonicalised:
// the "transformer." prefix is dropped ("h.0.attn.c_attn.weight", "wte.weight"),
// heads keep theirs ("lm_head.weight", "score.weight").
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/config.h"
#include "io/safetensors.h"

namespace gpt2q {

enum class ModelKind { Base, CausalLM, SequenceClassification };

struct Checkpoint {
  std::filesystem::path dir;
  GPT2Config config;
  ModelKind kind = ModelKind::CausalLM;
  bool had_transformer_prefix = false;
  std::map<std::string, Tensor> tensors;        // canonical name -> view (dtype as stored)
  std::map<std::string, std::string> source;    // canonical name -> file it came from
  std::vector<SafetensorsFile> files;           // keeps the mappings alive

  // Loads and checks against config: every required tensor present with the
  // right shape and a float dtype; no unexpected extra tensors with bad shapes.
  static Checkpoint load(const std::filesystem::path& dir);

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Error "DIR: missing tensor NAME" when absent.
  const Tensor& get(const std::string& name) const;
  // As fp32 (converted from F16/BF16 when stored so; a view when already F32).
  Tensor get_f32(const std::string& name) const;
  // Sum of bytes of all stored tensors.
  size_t stored_bytes() const;
};

// Writes a checkpoint dir as transformers lays it out (config.json and
// model.safetensors with the "transformer." prefix for LM/classifier models).
void save_checkpoint(const std::filesystem::path& dir, const GPT2Config& config, ModelKind kind,
                     const std::vector<std::pair<std::string, Tensor>>& canonical_tensors);

// F16/BF16/F32 tensor -> new fp32 tensor (or the same one when already F32).
Tensor to_f32(const Tensor& t);

}  // namespace gpt2q
