#pragma once
// GPT2Config as transformers writes it in config.json. Unknown keys are kept
// in `raw` so that a checkpoint we rewrite keeps everything it had.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpt2q {

struct GPT2Config {
  int64_t vocab_size = 50257;
  int64_t n_positions = 1024;
  int64_t n_embd = 768;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  std::optional<int64_t> n_inner;  // null -> 4 * n_embd
  double layer_norm_epsilon = 1e-5;
  std::string activation_function = "gelu_new";
  double resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1, summary_first_dropout = 0.1;
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  bool reorder_and_upcast_attn = false;
  bool tie_word_embeddings = true;  // CausalLM without lm_head.weight needs this
  std::optional<int64_t> bos_token_id = 50256;
  std::optional<int64_t> eos_token_id = 50256;
  std::optional<int64_t> pad_token_id;
  std::vector<std::string> architectures;  // e.g. {"GPT2ForSequenceClassification"}
  // index -> label name; empty when config.json has neither id2label nor
  // num_labels (transformers then assumes 2 labels: see Checkpoint::load).
  std::vector<std::string> id2label;
  std::string dtype = "float32";            // `dtype` (transformers >= 5) or `torch_dtype`
  nlohmann::json raw = nlohmann::json::object();  // the whole file as read

  int64_t inner() const { return n_inner.value_or(4 * n_embd); }
  int64_t head_dim() const { return n_embd / n_head; }
  int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
  // The factor on layer `layer`'s (0-based) attention scores: 1/sqrt(head_dim)
  // when scale_attn_weights, then / (layer + 1) when
  // scale_attn_by_inverse_layer_idx. HF computes it in Python floats (double)
  // and torch applies it as fp32; so does every gpt2q pass.
  float attention_scale(int64_t layer) const;

  // Reads and validates config.json (Error names the file and the key).
  static GPT2Config load(const std::filesystem::path& path);
  static GPT2Config from_json(const nlohmann::json& j, const std::string& source);
  // The JSON transformers expects (raw, with our fields written over it).
  nlohmann::json to_json() const;
  void save(const std::filesystem::path& path) const;  // atomic
};

// The names of a comma-separated --labels list: at least two, none empty.
std::vector<std::string> split_label_names(const std::string& list);

}  // namespace gpt2q
