#include "io/config.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"

namespace gpt2q {

float GPT2Config::attention_scale(int64_t layer) const {
  double s = 1.0;
  if (scale_attn_weights) s = 1.0 / std::sqrt(static_cast<double>(head_dim()));
  if (scale_attn_by_inverse_layer_idx) s /= static_cast<double>(layer + 1);
  return static_cast<float>(s);
}

std::vector<std::string> split_label_names(const std::string& list) {
  std::vector<std::string> v;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) fail("--labels: empty label name in '{}'", list);
    // label2id maps names to ids: a repeated name would lose an entry.
    if (std::find(v.begin(), v.end(), item) != v.end()) fail("--labels: label '{}' is given twice", item);
    v.push_back(item);
  }
  if (v.size() < 2) fail("--labels: need at least two comma-separated names, got '{}'", list);
  return v;
}

namespace {

using nlohmann::json;

// Dimensions above this are not a GPT-2 and would overflow shape arithmetic.
constexpr int64_t kMaxDim = int64_t{1} << 31;

std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads typed keys of one config object, naming file and key in every error.
class Reader {
 public:
  Reader(const json& j, const std::string& source) : j_(j), src_(source) {}

  bool has(const char* key) const { return j_.contains(key); }
  bool is_null(const char* key) const { return j_.contains(key) && j_[key].is_null(); }

  [[noreturn]] void bad(const char* key, const std::string& want) const {
    fail("{}: key '{}': must be {}, got {}", src_, key, want, brief(j_[key]));
  }

  void positive_int(const char* key, int64_t& out) const {
    if (!has(key)) return;
    const json& v = j_[key];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > kMaxDim)
      bad(key, fmt::format("a positive integer (at most {})", kMaxDim));
    out = v.get<int64_t>();
  }
  void optional_positive_int(const char* key, std::optional<int64_t>& out) const {
    if (!has(key)) return;
    if (is_null(key)) {
      out.reset();
      return;
    }
    int64_t v = 0;
    positive_int(key, v);
    out = v;
  }
  // Token ids: null or a non-negative integer (transformers 5 also allows a
  // list for eos_token_id; the first entry is the one generation stops on).
  void token_id(const char* key, std::optional<int64_t>& out) const {
    if (!has(key)) return;
    const json* v = &j_[key];
    if (v->is_null()) {
      out.reset();
      return;
    }
    if (v->is_array() && !v->empty()) v = &(*v)[0];
    if (!v->is_number_integer() || v->get<int64_t>() < 0) bad(key, "null or a non-negative integer");
    out = v->get<int64_t>();
  }
  void number(const char* key, double& out, double lo, double hi, bool lo_open) const {
    if (!has(key)) return;
    const json& v = j_[key];
    bool ok = v.is_number() && v.get<double>() <= hi && (lo_open ? v.get<double>() > lo : v.get<double>() >= lo);
    if (!ok) bad(key, fmt::format("a number in {}{}, {}]", lo_open ? "(" : "[", lo, hi));
    out = v.get<double>();
  }
  void boolean(const char* key, bool& out) const {
    if (!has(key)) return;
    if (!j_[key].is_boolean()) bad(key, "true or false");
    out = j_[key].get<bool>();
  }
  void string(const char* key, std::string& out) const {
    if (!has(key) || is_null(key)) return;
    if (!j_[key].is_string()) bad(key, "a string");
    out = j_[key].get<std::string>();
  }

 private:
  const json& j_;
  const std::string& src_;
};

std::vector<std::string> read_labels(const json& j, const std::string& src) {
  std::vector<std::string> labels;
  if (j.contains("id2label") && !j["id2label"].is_null()) {
    const json& m = j["id2label"];
    if (!m.is_object() || m.empty()) fail("{}: key 'id2label': must be a non-empty object, got {}", src, brief(m));
    labels.resize(m.size());
    std::vector<bool> seen(m.size(), false);
    for (const auto& [k, v] : m.items()) {
      size_t idx = 0;
      bool numeric = !k.empty() && k.size() < 10 && k.find_first_not_of("0123456789") == std::string::npos &&
                     (k == "0" || k[0] != '0');
      if (numeric) idx = std::stoul(k);
      if (!numeric || idx >= labels.size() || seen[idx])
        fail("{}: key 'id2label': keys must be \"0\"..\"{}\", got \"{}\"", src, labels.size() - 1, k);
      if (!v.is_string()) fail("{}: key 'id2label': label {} must be a string, got {}", src, k, brief(v));
      seen[idx] = true;
      labels[idx] = v.get<std::string>();
    }
    // label2id maps names to ids, so a repeated name would lose an entry when
    // the config is saved (and the saved file would not load again).
    std::map<std::string, size_t> first;
    for (size_t i = 0; i < labels.size(); ++i) {
      auto [it, fresh] = first.emplace(labels[i], i);
      if (!fresh)
        fail("{}: key 'id2label': label {} is given twice (ids {} and {})", src, brief(json(labels[i])), it->second, i);
    }
  }
  if (j.contains("num_labels") && !j["num_labels"].is_null()) {
    const json& v = j["num_labels"];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > 1'000'000)
      fail("{}: key 'num_labels': must be a positive integer, got {}", src, brief(v));
    auto n = static_cast<size_t>(v.get<int64_t>());
    if (labels.empty()) {
      for (size_t i = 0; i < n; ++i) labels.push_back(fmt::format("LABEL_{}", i));
    } else if (labels.size() != n) {
      fail("{}: key 'num_labels' is {} but id2label has {} labels", src, n, labels.size());
    }
  }
  if (j.contains("label2id") && !j["label2id"].is_null()) {
    const json& m = j["label2id"];
    if (labels.empty()) fail("{}: key 'label2id' is given without id2label", src);
    bool ok = m.is_object() && m.size() == labels.size();
    for (size_t i = 0; ok && i < labels.size(); ++i) {
      auto it = m.find(labels[i]);
      ok = it != m.end() && it->is_number_integer() && it->get<int64_t>() == static_cast<int64_t>(i);
    }
    if (!ok) fail("{}: key 'label2id' is not the inverse of id2label ({})", src, brief(m));
  }
  return labels;
}

}  // namespace

GPT2Config GPT2Config::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  if (j.contains("model_type") && j["model_type"] != "gpt2")
    fail("{}: key 'model_type': expected \"gpt2\", got {}", source, brief(j["model_type"]));
  GPT2Config c;
  c.raw = j;
  Reader r(j, source);
  r.positive_int("vocab_size", c.vocab_size);
  r.positive_int("n_positions", c.n_positions);
  r.positive_int("n_embd", c.n_embd);
  r.positive_int("n_layer", c.n_layer);
  r.positive_int("n_head", c.n_head);
  r.optional_positive_int("n_inner", c.n_inner);
  r.number("layer_norm_epsilon", c.layer_norm_epsilon, 0.0, 1.0, true);
  r.string("activation_function", c.activation_function);
  r.number("resid_pdrop", c.resid_pdrop, 0.0, 1.0, false);
  r.number("embd_pdrop", c.embd_pdrop, 0.0, 1.0, false);
  r.number("attn_pdrop", c.attn_pdrop, 0.0, 1.0, false);
  r.number("summary_first_dropout", c.summary_first_dropout, 0.0, 1.0, false);
  r.boolean("scale_attn_weights", c.scale_attn_weights);
  r.boolean("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  r.boolean("reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  r.boolean("tie_word_embeddings", c.tie_word_embeddings);
  r.token_id("bos_token_id", c.bos_token_id);
  r.token_id("eos_token_id", c.eos_token_id);
  r.token_id("pad_token_id", c.pad_token_id);
  // transformers >= 5 writes `dtype`, older versions `torch_dtype`.
  r.string("torch_dtype", c.dtype);
  r.string("dtype", c.dtype);

  if (j.contains("architectures") && !j["architectures"].is_null()) {
    const json& a = j["architectures"];
    if (!a.is_array()) r.bad("architectures", "a list of strings");
    for (const auto& s : a) {
      if (!s.is_string()) r.bad("architectures", "a list of strings");
      c.architectures.push_back(s.get<std::string>());
    }
  }
  c.id2label = read_labels(j, source);

  // gelu_new and the exact (erf) gelu are implemented; transformers' other
  // activations differ in the last bits (gelu_pytorch_tanh) or entirely
  // (relu), so refusing beats silently computing something else.
  if (c.activation_function != "gelu_new" && c.activation_function != "gelu")
    fail("{}: key 'activation_function': \"{}\" is not supported (gpt2q implements gelu_new and gelu)", source,
         c.activation_function);
  if (c.n_embd % c.n_head != 0)
    fail("{}: key 'n_head': n_embd {} is not divisible by n_head {}", source, c.n_embd, c.n_head);
  return c;
}

GPT2Config GPT2Config::load(const std::filesystem::path& path) {
  return from_json(read_json_file(path, kConfigFileLimit), path.string());
}

json GPT2Config::to_json() const {
  json j = raw.is_object() ? raw : json::object();
  auto opt = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  j["model_type"] = "gpt2";
  j["vocab_size"] = vocab_size;
  j["n_positions"] = n_positions;
  j["n_embd"] = n_embd;
  j["n_layer"] = n_layer;
  j["n_head"] = n_head;
  j["n_inner"] = opt(n_inner);
  j["layer_norm_epsilon"] = layer_norm_epsilon;
  j["activation_function"] = activation_function;
  j["resid_pdrop"] = resid_pdrop;
  j["embd_pdrop"] = embd_pdrop;
  j["attn_pdrop"] = attn_pdrop;
  j["summary_first_dropout"] = summary_first_dropout;
  j["scale_attn_weights"] = scale_attn_weights;
  j["scale_attn_by_inverse_layer_idx"] = scale_attn_by_inverse_layer_idx;
  j["reorder_and_upcast_attn"] = reorder_and_upcast_attn;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = opt(bos_token_id);
  // Keep a list-valued eos_token_id when its first entry is still ours.
  bool eos_list_kept = j.contains("eos_token_id") && j["eos_token_id"].is_array() &&
                       !j["eos_token_id"].empty() && eos_token_id && j["eos_token_id"][0] == *eos_token_id;
  if (!eos_list_kept) j["eos_token_id"] = opt(eos_token_id);
  j["pad_token_id"] = opt(pad_token_id);
  if (architectures.empty()) {
    j.erase("architectures");
  } else {
    j["architectures"] = architectures;
  }
  if (id2label.empty()) {
    j.erase("id2label");
    j.erase("label2id");
    j.erase("num_labels");
  } else {
    json i2l = json::object(), l2i = json::object();
    for (size_t i = 0; i < id2label.size(); ++i) {
      i2l[std::to_string(i)] = id2label[i];
      l2i[id2label[i]] = i;
    }
    j["id2label"] = i2l;
    j["label2id"] = l2i;
    if (j.contains("num_labels")) j["num_labels"] = id2label.size();
  }
  j["dtype"] = dtype;
  if (j.contains("torch_dtype")) j["torch_dtype"] = dtype;
  return j;
}

void GPT2Config::save(const std::filesystem::path& path) const {
  std::string text;
  try {
    text = to_json().dump(2) + "\n";
  } catch (const json::exception& e) {
    fail("{}: cannot write config ({})", path.string(), e.what());
  }
  write_file_atomic(path, text);
}

}  // namespace gpt2q
