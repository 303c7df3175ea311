// `gpt2q info MODEL_DIR [--json]`: what a checkpoint holds, after the full
// validation Checkpoint::load does (so it doubles as a checkpoint checker).
#include <cmath>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "model/gpt2.h"
#include "quant/quant_config.h"
#include "quant/quantized_checkpoint.h"

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

// Parameters a stored tensor stands for: a quantized weight counts its
// logical [rows, cols], its quantization state counts none.
uint64_t logical_params(const Checkpoint& ck, const std::string& name, const gpt2q::Tensor& t,
                        const std::map<std::string, gpt2q::Shape>& spec_shapes) {
  if (ck.quantized_weights.count(name)) return static_cast<uint64_t>(gpt2q::shape_numel(spec_shapes.at(name)));
  if (!gpt2q::quant_state_owner(name).empty() && ck.quantized_weights.count(gpt2q::quant_state_owner(name))) return 0;
  return static_cast<uint64_t>(t.numel());
}

// Bytes the loaded model holds per component (what gpt2q keeps in memory:
// quantized weights packed, everything else fp32). Empty when the model
// cannot be built; `why` then says why.
std::map<std::string, uint64_t> held_bytes(const Checkpoint& ck, std::string* why) {
  std::map<std::string, uint64_t> held;
  try {
    auto model = gpt2q::GPT2Model::from_checkpoint(ck);
    for (const auto& [name, bytes] : model->weight_bytes())
      if (name != "blocks") held[name] = bytes;
    for (const auto& bw : model->blocks()) {
      held["attn"] += bw.c_attn->bytes() + bw.attn_c_proj->bytes();
      held["mlp"] += bw.c_fc->bytes() + bw.mlp_c_proj->bytes();
      held["ln"] += bw.ln_1_w.nbytes() + bw.ln_1_b.nbytes() + bw.ln_2_w.nbytes() + bw.ln_2_b.nbytes();
    }
  } catch (const gpt2q::Error& e) {
    if (ck.quantized()) throw;
    *why = e.what();
    held.clear();
  }
  return held;
}

// NaN/Inf in a floating-point tensor: a warning, not an error, since `info`
// is how a user finds out what a checkpoint holds (quantize refuses them).
void warn_non_finite(const Checkpoint& ck, const std::string& name, const gpt2q::Tensor& t) {
  using gpt2q::DType;
  if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16) return;
  const gpt2q::Tensor f = gpt2q::to_f32(t);
  const float* p = f.data<float>();
  int64_t bad = 0;
  for (int64_t i = 0; i < f.numel(); ++i) bad += std::isfinite(p[i]) ? 0 : 1;
  if (bad == 0) return;
  const auto src = ck.source.find(name);
  fmt::print(stderr, "gpt2q: warning: {}: tensor '{}' holds {} non-finite value{} (NaN or Inf)\n",
             src != ck.source.end() ? src->second : ck.dir.string(), name, bad, bad == 1 ? "" : "s");
}

void run_info(const std::string& dir, bool as_json) {
  Checkpoint ck = Checkpoint::load(dir);
  const auto& c = ck.config;
  std::string quantization;
  if (ck.quantized()) {
    gpt2q::quant::validate_quantized_checkpoint(ck);
    quantization = fmt::format("{}, {} weights quantized",
                               gpt2q::quant::checkpoint_quantization(ck).describe(), ck.quantized_weights.size());
  }
  std::map<std::string, gpt2q::Shape> spec_shapes;
  for (const auto& s : gpt2q::expected_tensors(c, ck.kind)) spec_shapes[s.name] = s.shape;
  spec_shapes["lm_head.weight"] = {c.vocab_size, c.n_embd};
  std::string held_why;
  const std::map<std::string, uint64_t> held = held_bytes(ck, &held_why);
  uint64_t held_total = 0;
  for (const auto& [k, v] : held) held_total += v;

  struct Totals {
    uint64_t params = 0, bytes = 0;
  };
  std::map<std::string, Totals> by_component;
  Totals total;
  std::set<std::string> dtypes;
  for (const auto& [name, t] : ck.tensors) {
    auto& comp = by_component[gpt2q::tensor_component(name)];
    const uint64_t params = logical_params(ck, name, t, spec_shapes);
    comp.params += params;
    comp.bytes += t.nbytes();
    total.params += params;
    total.bytes += t.nbytes();
    dtypes.insert(std::string(gpt2q::dtype_name(t.dtype())));
    warn_non_finite(ck, name, t);
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
      if (by_component.count(k)) {
        comps[k] = {{"parameters", by_component[k].params}, {"bytes", by_component[k].bytes}};
        if (held.count(k)) comps[k]["held_bytes"] = held.at(k);
      }
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
    // What the loaded model holds in memory (quantized weights packed, the
    // rest fp32); null when gpt2q cannot build the model.
    j["held_bytes"] = held.empty() ? nlohmann::json(nullptr) : nlohmann::json(held_total);
    j["quantization_config"] = ck.quantization_config;
    j["quantized_weights"] = ck.quantized_weights;
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
  if (ck.quantized()) fmt::print("quantization  {}\n", quantization);
  if (ck.kind == gpt2q::ModelKind::CausalLM)
    fmt::print("lm head       {}\n", lm_head == "tied" ? "tied to wte" : "lm_head.weight");
  fmt::print("tokenizer     {}\n", tok.empty() ? "absent" : tok);
  fmt::print("parameters    {}\n", grouped(total.params));
  auto held_of = [&](const std::string& k) { return held.count(k) ? grouped(held.at(k)) : std::string("-"); };
  fmt::print("\n{:<10}{:>16}{:>18}{:>18}\n", "component", "parameters", "bytes", "in memory");
  for (const char* k : kComponents)
    if (by_component.count(k))
      fmt::print("{:<10}{:>16}{:>18}{:>18}\n", k, grouped(by_component[k].params), grouped(by_component[k].bytes),
                 held_of(k));
  fmt::print("{:<10}{:>16}{:>18}{:>18}\n", "total", grouped(total.params), grouped(total.bytes),
             held.empty() ? std::string("-") : grouped(held_total));
  fmt::print("stored        {:.2f} MB, {:.2f} MiB (tensor data in the safetensors files)\n",
             static_cast<double>(total.bytes) / 1e6, static_cast<double>(total.bytes) / (1024.0 * 1024.0));
  if (!held.empty())
    fmt::print("in memory     {:.2f} MB, {:.2f} MiB (weights and quantization state of the loaded model)\n",
               static_cast<double>(held_total) / 1e6, static_cast<double>(held_total) / (1024.0 * 1024.0));
  else
    fmt::print("in memory     unknown: {}\n", held_why);
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
