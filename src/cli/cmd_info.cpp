// `gpt2q info MODEL_DIR [--json]`: what a checkpoint holds, after the full
// validation Checkpoint::load does (so it doubles as a checkpoint checker).
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "cli/command.h"
#include "io/checkpoint.h"

namespace {

namespace fs = std::filesystem;
using gpt2q::Checkpoint;

// Report order; tensor_component() names.
constexpr const char* kComponents[] = {"wte", "wpe", "attn", "mlp", "ln", "ln_f", "lm_head", "score"};

std::string grouped(uint64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

// The tokenizer layouts Tokenizer::load accepts (text/tokenizer.h); checked by
// file name here so that `info` works on any directory without loading it.
std::string tokenizer_files(const fs::path& dir) {
  std::error_code ec;
  auto has = [&](const char* f) { return fs::is_regular_file(dir / f, ec); };
  if (has("vocab.json") && has("merges.txt")) return "vocab.json + merges.txt";
  if (has("encoder.json") && has("vocab.bpe")) return "encoder.json + vocab.bpe";
  if (has("tokenizer.json")) return "tokenizer.json";
  return "";
}

void run_info(const std::string& dir, bool as_json) {
  Checkpoint ck = Checkpoint::load(dir);
  const auto& c = ck.config;

  struct Totals {
    uint64_t params = 0, bytes = 0;
  };
  std::map<std::string, Totals> by_component;
  Totals total;
  std::set<std::string> dtypes;
  for (const auto& [name, t] : ck.tensors) {
    auto& comp = by_component[gpt2q::tensor_component(name)];
    comp.params += static_cast<uint64_t>(t.numel());
    comp.bytes += t.nbytes();
    total.params += static_cast<uint64_t>(t.numel());
    total.bytes += t.nbytes();
    dtypes.insert(std::string(gpt2q::dtype_name(t.dtype())));
  }
  std::vector<std::string> files;
  for (const auto& f : ck.files) files.push_back(f.path.filename().string());
  const std::string tok = tokenizer_files(dir);
  // GPT-2's LM head is wte itself unless the checkpoint stores lm_head.weight.
  const std::string lm_head = ck.kind != gpt2q::ModelKind::CausalLM ? "none"
                              : ck.has("lm_head.weight")             ? "stored"
                                                                     : "tied";

  if (as_json) {
    nlohmann::json comps = nlohmann::json::object();
    for (const char* k : kComponents)
      if (by_component.count(k)) comps[k] = {{"parameters", by_component[k].params}, {"bytes", by_component[k].bytes}};
    nlohmann::json config = {{"vocab_size", c.vocab_size},       {"n_positions", c.n_positions},
                             {"n_embd", c.n_embd},               {"n_layer", c.n_layer},
                             {"n_head", c.n_head},               {"n_inner", c.inner()},
                             {"activation_function", c.activation_function},
                             {"layer_norm_epsilon", c.layer_norm_epsilon},
                             {"dtype", c.dtype}};
    config["pad_token_id"] = c.pad_token_id ? nlohmann::json(*c.pad_token_id) : nlohmann::json(nullptr);
    nlohmann::json j = {{"dir", dir},
                        {"architecture", std::string(gpt2q::architecture_name(ck.kind))},
                        {"kind", std::string(gpt2q::model_kind_name(ck.kind))},
                        {"config", config},
                        {"parameters", total.params},
                        {"bytes", total.bytes},
                        {"components", comps},
                        {"dtypes", dtypes},
                        {"files", files},
                        {"transformer_prefix", ck.had_transformer_prefix},
                        {"lm_head", lm_head},
                        {"tokenizer", !tok.empty()},
                        {"tokenizer_files", tok}};
    if (ck.kind == gpt2q::ModelKind::SequenceClassification) j["labels"] = c.id2label;
    gpt2q::cli::print_json(j);
    return;
  }

  fmt::print("model         {}\n", dir);
  fmt::print("architecture  {} ({})\n", gpt2q::architecture_name(ck.kind), gpt2q::model_kind_name(ck.kind));
  fmt::print("config        vocab {}, positions {}, n_embd {}, layers {}, heads {} (head dim {}), inner {}, {}, "
             "eps {}\n",
             c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head, c.head_dim(), c.inner(),
             c.activation_function, c.layer_norm_epsilon);
  if (ck.kind == gpt2q::ModelKind::SequenceClassification)
    fmt::print("labels        {}: {}\n", c.id2label.size(), fmt::join(c.id2label, ", "));
  fmt::print("pad token     {}\n", c.pad_token_id ? std::to_string(*c.pad_token_id) : "none");
  fmt::print("weights       {}{}\n", fmt::join(files, ", "),
             ck.had_transformer_prefix ? " (names prefixed \"transformer.\")" : "");
  fmt::print("stored dtype  {}\n", fmt::join(dtypes, ", "));
  if (ck.kind == gpt2q::ModelKind::CausalLM)
    fmt::print("lm head       {}\n", lm_head == "tied" ? "tied to wte" : "lm_head.weight");
  fmt::print("tokenizer     {}\n", tok.empty() ? "absent" : tok);
  fmt::print("parameters    {}\n", grouped(total.params));
  fmt::print("\n{:<10}{:>16}{:>18}\n", "component", "parameters", "bytes");
  for (const char* k : kComponents)
    if (by_component.count(k))
      fmt::print("{:<10}{:>16}{:>18}\n", k, grouped(by_component[k].params), grouped(by_component[k].bytes));
  fmt::print("{:<10}{:>16}{:>18}  ({:.2f} MB, {:.2f} MiB)\n", "total", grouped(total.params), grouped(total.bytes),
             static_cast<double>(total.bytes) / 1e6, static_cast<double>(total.bytes) / (1024.0 * 1024.0));
}

}  // namespace

GPT2Q_COMMAND(info) {
  auto* cmd = app.add_subcommand("info", "Check a checkpoint directory and show its config, parameters and sizes");
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("MODEL_DIR", *dir, "Checkpoint directory (config.json + model.safetensors)")->required();
  cmd->add_flag("--json", *as_json, "Print one JSON object instead of text");
  cmd->callback([dir, as_json] { run_info(*dir, *as_json); });
}
