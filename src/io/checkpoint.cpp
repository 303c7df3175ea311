#include "io/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "core/half.h"

namespace gpt2q {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "transformer.";

// Index of block "h.N." at the start of `name`, or -1.
int64_t block_index(std::string_view name, std::string_view* rest = nullptr) {
  if (name.substr(0, 2) != "h.") return -1;
  size_t dot = name.find('.', 2);
  if (dot == std::string_view::npos || dot == 2) return -1;
  int64_t idx = -1;
  auto [p, ec] = std::from_chars(name.data() + 2, name.data() + dot, idx);
  if (ec != std::errc() || p != name.data() + dot) return -1;
  if (rest) *rest = name.substr(dot + 1);
  return idx;
}

// transformers registered the causal mask as a buffer and older versions
// saved it; it is derived from n_positions, not learned.
bool is_mask_buffer(std::string_view name) {
  std::string_view rest;
  return block_index(name, &rest) >= 0 && (rest == "attn.bias" || rest == "attn.masked_bias");
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

std::string_view float_dtype_config_name(DType t) {
  switch (t) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

ModelKind kind_from_config(const GPT2Config& c, bool has_score, const std::string& config_path) {
  if (c.architectures.empty()) return has_score ? ModelKind::SequenceClassification : ModelKind::CausalLM;
  const std::string& a = c.architectures.front();
  for (ModelKind k : {ModelKind::Base, ModelKind::CausalLM, ModelKind::SequenceClassification})
    if (a == architecture_name(k)) return k;
  fail("{}: key 'architectures': \"{}\" is not supported (GPT2LMHeadModel, GPT2ForSequenceClassification or "
       "GPT2Model)",
       config_path, a);
}

bool is_quantized_dtype(DType t) { return t == DType::U8 || t == DType::I8; }

constexpr std::string_view kWeightStateSuffixes[] = {
    ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__nf4",
    ".quant_state.bitsandbytes__fp4"};
// GPTQ's layout (quant_method "gptq") replaces MODULE.weight by MODULE.qweight
// and keeps its zero points, scales and groups beside it.
constexpr std::string_view kModuleStateSuffixes[] = {".SCB",     ".weight_format", ".weight_scale", ".weight_zero_point",
                                                     ".qweight", ".qzeros",        ".scales",       ".g_idx"};

// MODULE.qweight for MODULE.weight: the tensor that stands for a weight
// stored in GPTQ's layout.
std::string gptq_qweight_of(const std::string& weight_name) {
  return weight_name.substr(0, weight_name.size() - std::string_view(".weight").size()) + ".qweight";
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Checks `tensors` (canonical names) against what `config` and `kind` need.
// `where(name)` names the file a tensor came from, `weights` the weights as a
// whole (for missing tensors). With `quantized` (config.json has a
// quantization_config), 2-D weights stored as U8 / I8, or as MODULE.qweight
// with no MODULE.weight (GPTQ's layout), are quantized: their names are
// returned, and their layout is left to src/quant.
template <typename Where>
std::set<std::string> check_tensors(const std::map<std::string, Tensor>& tensors, const GPT2Config& config,
                                    ModelKind kind, bool quantized, const std::string& weights, const Where& where) {
  auto specs = expected_tensors(config, kind);
  std::set<std::string> quantized_weights;
  auto stored_quantized = [&](const std::string& name, const Shape& spec_shape) {
    if (!quantized || spec_shape.size() != 2) return false;
    auto it = tensors.find(name);
    const bool packed = it != tensors.end() ? is_quantized_dtype(it->second.dtype())
                                            : tensors.count(gptq_qweight_of(name)) != 0;
    if (packed) quantized_weights.insert(name);
    return packed;
  };
  std::set<std::string> known;
  for (const auto& s : specs) {
    known.insert(s.name);
    if (stored_quantized(s.name, s.shape)) continue;
    auto it = tensors.find(s.name);
    if (it == tensors.end()) {
      std::string why = block_index(s.name) >= 0 ? fmt::format(" (config.json: n_layer {})", config.n_layer) : "";
      fail("{}: missing tensor '{}'{}", weights, s.name, why);
    }
    const Tensor& t = it->second;
    if (!quantized && is_quantized_dtype(t.dtype()))
      fail("{}: tensor '{}' has dtype {}; GPT-2 weights must be F32, F16 or BF16 (config.json has no "
           "quantization_config)",
           where(s.name), s.name, dtype_name(t.dtype()));
    if (t.shape() != s.shape)
      fail("{}: tensor '{}' has shape {} but config.json implies {} = {}", where(s.name), s.name, shape_str(t.shape()),
           s.dims, shape_str(s.shape));
  }
  const Shape lm_head_shape{config.vocab_size, config.n_embd};
  if (kind == ModelKind::CausalLM && (tensors.count("lm_head.weight") || tensors.count("lm_head.qweight"))) {
    known.insert("lm_head.weight");
    if (!stored_quantized("lm_head.weight", lm_head_shape) && tensors.at("lm_head.weight").shape() != lm_head_shape)
      fail("{}: tensor 'lm_head.weight' has shape {} but config.json implies [vocab_size, n_embd] = {}",
           where("lm_head.weight"), shape_str(tensors.at("lm_head.weight").shape()), shape_str(lm_head_shape));
  }
  for (const auto& [name, t] : tensors) {
    if (!known.count(name)) {
      if (std::string owner = quant_state_owner(name);
          !owner.empty() && (tensors.count(owner) || (known.count(owner) && tensors.count(gptq_qweight_of(owner))))) {
        if (!quantized)
          fail("{}: unexpected tensor '{}' (quantization state, but config.json has no quantization_config)",
               where(name), name);
        if (!quantized_weights.count(owner))
          fail("{}: tensor '{}' is quantization state of '{}', which is not stored quantized ({})", where(name), name,
               owner, tensors.count(owner) ? dtype_name(tensors.at(owner).dtype()) : "no qweight");
        continue;
      }
      if (int64_t b = block_index(name); b >= config.n_layer) {
        fail("{}: unexpected tensor '{}' (config.json: n_layer {})", where(name), name, config.n_layer);
      } else {
        fail("{}: unexpected tensor '{}' for a {}", where(name), name, architecture_name(kind));
      }
    }
    if (!is_float(t.dtype()) && !quantized_weights.count(name)) {
      std::string hint = quantized || !is_quantized_dtype(t.dtype()) ? "" : " (config.json has no quantization_config)";
      fail("{}: tensor '{}' has dtype {}; GPT-2 weights must be F32, F16 or BF16{}", where(name), name,
           dtype_name(t.dtype()), hint);
    }
  }
  if (kind == ModelKind::CausalLM && !config.tie_word_embeddings && !tensors.count("lm_head.weight") &&
      !quantized_weights.count("lm_head.weight"))
    fail("{}: missing tensor 'lm_head.weight' (config.json: tie_word_embeddings is false)", weights);
  return quantized_weights;
}

// Shard file names come from the index; keep them inside the checkpoint dir.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

std::string_view model_kind_name(ModelKind kind) {
  switch (kind) {
    case ModelKind::Base: return "Base";
    case ModelKind::CausalLM: return "CausalLM";
    case ModelKind::SequenceClassification: return "SequenceClassification";
  }
  return "?";
}

std::string_view architecture_name(ModelKind kind) {
  switch (kind) {
    case ModelKind::Base: return "GPT2Model";
    case ModelKind::CausalLM: return "GPT2LMHeadModel";
    case ModelKind::SequenceClassification: return "GPT2ForSequenceClassification";
  }
  return "?";
}

std::vector<TensorSpec> expected_tensors(const GPT2Config& c, ModelKind kind) {
  const int64_t C = c.n_embd, I = c.inner();
  std::vector<TensorSpec> v;
  v.push_back({"wte.weight", {c.vocab_size, C}, "[vocab_size, n_embd]", "wte"});
  v.push_back({"wpe.weight", {c.n_positions, C}, "[n_positions, n_embd]", "wpe"});
  const std::string inner = c.n_inner ? "n_inner" : "4*n_embd";
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string h = fmt::format("h.{}.", i);
    v.push_back({h + "ln_1.weight", {C}, "[n_embd]", "ln"});
    v.push_back({h + "ln_1.bias", {C}, "[n_embd]", "ln"});
    v.push_back({h + "attn.c_attn.weight", {C, 3 * C}, "[n_embd, 3*n_embd]", "attn"});
    v.push_back({h + "attn.c_attn.bias", {3 * C}, "[3*n_embd]", "attn"});
    v.push_back({h + "attn.c_proj.weight", {C, C}, "[n_embd, n_embd]", "attn"});
    v.push_back({h + "attn.c_proj.bias", {C}, "[n_embd]", "attn"});
    v.push_back({h + "ln_2.weight", {C}, "[n_embd]", "ln"});
    v.push_back({h + "ln_2.bias", {C}, "[n_embd]", "ln"});
    v.push_back({h + "mlp.c_fc.weight", {C, I}, "[n_embd, " + inner + "]", "mlp"});
    v.push_back({h + "mlp.c_fc.bias", {I}, "[" + inner + "]", "mlp"});
    v.push_back({h + "mlp.c_proj.weight", {I, C}, "[" + inner + ", n_embd]", "mlp"});
    v.push_back({h + "mlp.c_proj.bias", {C}, "[n_embd]", "mlp"});
  }
  v.push_back({"ln_f.weight", {C}, "[n_embd]", "ln_f"});
  v.push_back({"ln_f.bias", {C}, "[n_embd]", "ln_f"});
  if (kind == ModelKind::SequenceClassification)
    v.push_back({"score.weight", {c.num_labels(), C}, "[num_labels, n_embd]", "score"});
  return v;
}

std::string quant_state_owner(std::string_view name) {
  for (std::string_view suffix : kWeightStateSuffixes)
    if (ends_with(name, suffix)) return std::string(name.substr(0, name.size() - suffix.size()));
  for (std::string_view suffix : kModuleStateSuffixes)
    if (ends_with(name, suffix)) return std::string(name.substr(0, name.size() - suffix.size())) + ".weight";
  return "";
}

std::string tensor_component(std::string_view name) {
  if (std::string owner = quant_state_owner(name); !owner.empty()) return tensor_component(owner);
  if (name == "wte.weight") return "wte";
  if (name == "wpe.weight") return "wpe";
  if (name == "ln_f.weight" || name == "ln_f.bias") return "ln_f";
  if (name == "lm_head.weight") return "lm_head";
  if (name == "score.weight") return "score";
  std::string_view rest;
  if (block_index(name, &rest) < 0) return "";
  if (rest.substr(0, 5) == "attn.") return "attn";
  if (rest.substr(0, 4) == "mlp.") return "mlp";
  if (rest.substr(0, 5) == "ln_1." || rest.substr(0, 5) == "ln_2.") return "ln";
  return "";
}

Checkpoint Checkpoint::load(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail("{}: no such directory", dir.string());
  if (!fs::is_directory(dir, ec)) fail("{}: not a directory (expected a checkpoint directory)", dir.string());
  Checkpoint ck;
  ck.dir = dir;
  const std::string config_path = (dir / "config.json").string();
  ck.config = GPT2Config::load(dir / "config.json");

  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  std::string weights;  // what missing-tensor errors name
  // canonical name -> the file that should hold it, when sharded
  std::map<std::string, std::string> expected_shard;
  if (fs::exists(single, ec)) {
    ck.files.push_back(SafetensorsFile::open(single));
    weights = single.string();
  } else if (fs::exists(index, ec)) {
    weights = index.string();
    const nlohmann::json j = read_json_file(index, kConfigFileLimit);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: no 'weight_map' object", weights);
    std::map<std::string, size_t> file_slot;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string() || !plain_file_name(file.get<std::string>()))
        fail("{}: weight_map entry '{}' must be a file name in the checkpoint directory", weights, name);
      const std::string f = file.get<std::string>();
      expected_shard[name] = f;
      if (!file_slot.count(f)) {
        file_slot[f] = ck.files.size();
        ck.files.push_back(SafetensorsFile::open(dir / f));
      }
    }
    if (ck.files.empty()) fail("{}: weight_map is empty", weights);
    for (const auto& [name, f] : expected_shard)
      if (!ck.files[file_slot[f]].tensors.count(name))
        fail("{}: tensor '{}' is mapped to {}, which does not contain it", weights, name, f);
  } else {
    std::string hint = fs::exists(dir / "pytorch_model.bin", ec) ? " (pytorch_model.bin is not supported; convert "
                                                                    "it to safetensors)"
                                                                  : "";
    fail("{}: no model.safetensors or model.safetensors.index.json{}", dir.string(), hint);
  }

  for (const auto& f : ck.files) {
    const std::string fname = f.path.filename().string();
    for (const auto& [stored, t] : f.tensors) {
      if (!expected_shard.empty()) {
        auto it = expected_shard.find(stored);
        if (it == expected_shard.end() || it->second != fname)
          fail("{}: tensor '{}' is not mapped to this file in {}", f.path.string(), stored, index.filename().string());
      }
      std::string name = stored;
      if (name.compare(0, kPrefix.size(), kPrefix) == 0) {
        name.erase(0, kPrefix.size());
        ck.had_transformer_prefix = true;
      }
      if (is_mask_buffer(name)) continue;
      if (ck.tensors.count(name))
        fail("{}: tensor '{}' appears twice (as '{}' in {} and in {})", f.path.string(), name, stored,
             fs::path(ck.source[name]).filename().string(), fname);
      ck.tensors.emplace(name, t);
      ck.source.emplace(name, f.path.string());
    }
  }

  ck.kind = kind_from_config(ck.config, ck.tensors.count("score.weight") != 0, config_path);
  if (ck.kind == ModelKind::SequenceClassification && ck.config.id2label.empty())
    ck.config.id2label = {"LABEL_0", "LABEL_1"};
  if (ck.config.raw.contains("quantization_config") && !ck.config.raw["quantization_config"].is_null()) {
    ck.quantization_config = ck.config.raw["quantization_config"];
    if (!ck.quantization_config.is_object()) fail("{}: quantization_config must be an object", config_path);
  }
  ck.quantized_weights = check_tensors(ck.tensors, ck.config, ck.kind, ck.quantized(), weights,
                                       [&](const std::string& n) { return ck.source.at(n); });
  return ck;
}

const Tensor& Checkpoint::get(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: missing tensor {}", dir.string(), name);
  return it->second;
}

Tensor Checkpoint::get_f32(const std::string& name) const { return to_f32(get(name)); }

size_t Checkpoint::stored_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : tensors) n += t.nbytes();
  return n;
}

Tensor to_f32(const Tensor& t) {
  if (t.dtype() == DType::F32) return t;
  if (t.dtype() != DType::F16 && t.dtype() != DType::BF16)
    fail("cannot convert a {} tensor to F32 (F16 and BF16 only)", dtype_name(t.dtype()));
  Tensor out = Tensor::empty(t.shape(), DType::F32);
  const uint16_t* src = t.data<uint16_t>();
  float* dst = out.data<float>();
  const int64_t n = t.numel();
  if (t.dtype() == DType::F16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
  }
  return out;
}

void save_checkpoint(const fs::path& dir, const GPT2Config& config, ModelKind kind,
                     const std::vector<std::pair<std::string, Tensor>>& canonical_tensors) {
  GPT2Config cfg = config;
  cfg.architectures = {std::string(architecture_name(kind))};
  std::map<std::string, Tensor> by_name;
  for (const auto& [name, t] : canonical_tensors)
    if (!by_name.emplace(name, t).second) fail("{}: tensor '{}' given twice", dir.string(), name);
  if (kind == ModelKind::SequenceClassification && cfg.id2label.empty() && by_name.count("score.weight")) {
    const Tensor& s = by_name.at("score.weight");
    for (int64_t i = 0; s.ndim() == 2 && i < s.dim(0); ++i) cfg.id2label.push_back(fmt::format("LABEL_{}", i));
  }
  if (by_name.count("wte.weight")) cfg.dtype = std::string(float_dtype_config_name(by_name.at("wte.weight").dtype()));
  const std::string weights = (dir / "model.safetensors").string();
  check_tensors(by_name, cfg, kind, false, weights, [&](const std::string&) { return weights; });

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory ({})", dir.string(), ec.message());
  std::vector<std::pair<std::string, Tensor>> stored;
  stored.reserve(canonical_tensors.size());
  const bool prefix = kind != ModelKind::Base;
  for (const auto& [name, t] : canonical_tensors) {
    bool head = name == "lm_head.weight" || name == "score.weight";
    stored.emplace_back(prefix && !head ? std::string(kPrefix) + name : name, t);
  }
  write_safetensors(dir / "model.safetensors", stored, {{"format", "pt"}});
  cfg.save(dir / "config.json");
}

}  // namespace gpt2q
