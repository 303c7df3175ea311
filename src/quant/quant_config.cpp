#include "quant/quant_config.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace gpt2q::quant {

namespace {

using nlohmann::json;

constexpr std::string_view kBnb = "bitsandbytes";
constexpr std::string_view kGpt2q = "gpt2q";
constexpr std::string_view kGptq = "gptq";

// Optional typed fields: absent or null gives `fallback`; a wrong type is an Error.
bool get_bool(const json& j, const char* key, bool fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail("{}: quantization_config.{} must be true or false", source, key);
  return j[key].get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_string()) fail("{}: quantization_config.{} must be a string", source, key);
  return j[key].get<std::string>();
}

std::vector<std::string> get_strings(const json& j, const char* key, const std::string& source) {
  std::vector<std::string> v;
  if (!j.contains(key) || j[key].is_null()) return v;
  if (!j[key].is_array()) fail("{}: quantization_config.{} must be a list of module names", source, key);
  for (const auto& e : j[key]) {
    if (!e.is_string()) fail("{}: quantization_config.{} must be a list of module names", source, key);
    v.push_back(e.get<std::string>());
  }
  return v;
}

// A compute dtype by torch's name; bnb's block may also say "float16".
std::string get_compute_dtype(const json& j, const char* key, const std::string& source, bool allow_fp16) {
  const std::string v = get_string(j, key, "float32", source);
  if (v == "float32" || v == "bfloat16" || (allow_fp16 && v == "float16")) return v;
  fail("{}: quantization_config.{} \"{}\" is not supported ({})", source, key, v,
       allow_fp16 ? "float32, bfloat16, float16" : "float32, bfloat16");
}

QuantizationConfig bnb_from_json(const json& j, const std::string& source) {
  QuantizationConfig c;
  // transformers writes both the public and the underscored flags; the
  // underscored ones are what BitsAndBytesConfig keeps.
  const bool in4 = get_bool(j, "load_in_4bit", get_bool(j, "_load_in_4bit", false, source), source);
  const bool in8 = get_bool(j, "load_in_8bit", get_bool(j, "_load_in_8bit", false, source), source);
  if (in4 == in8)
    fail("{}: quantization_config must set exactly one of load_in_4bit and load_in_8bit (got {} and {})", source, in4,
         in8);
  c.skip_modules = get_strings(j, "llm_int8_skip_modules", source);
  if (in8) {
    c.method = QuantMethod::llm_int8;
    if (j.contains("llm_int8_threshold") && !j["llm_int8_threshold"].is_null()) {
      if (!j["llm_int8_threshold"].is_number())
        fail("{}: quantization_config.llm_int8_threshold must be a number", source);
      c.llm_int8_threshold = j["llm_int8_threshold"].get<float>();
    }
    if (!(c.llm_int8_threshold >= 0.0f) || !std::isfinite(c.llm_int8_threshold))
      fail("{}: quantization_config.llm_int8_threshold must be finite and >= 0, got {}", source, c.llm_int8_threshold);
    if (get_bool(j, "llm_int8_has_fp16_weight", false, source))
      fail("{}: quantization_config.llm_int8_has_fp16_weight is true: only int8 weights are supported", source);
    return c;
  }
  const std::string type = get_string(j, "bnb_4bit_quant_type", "fp4", source);  // transformers' default
  if (type == "nf4") {
    c.method = QuantMethod::nf4;
  } else if (type == "fp4") {
    c.method = QuantMethod::fp4;
  } else {
    fail("{}: quantization_config.bnb_4bit_quant_type \"{}\" is not supported (nf4, fp4)", source, type);
  }
  c.double_quant = get_bool(j, "bnb_4bit_use_double_quant", false, source);
  c.compute_dtype = get_compute_dtype(j, "bnb_4bit_compute_dtype", source, true);
  const std::string storage = get_string(j, "bnb_4bit_quant_storage", "uint8", source);
  if (storage != "uint8")
    fail("{}: quantization_config.bnb_4bit_quant_storage \"{}\" is not supported (uint8)", source, storage);
  return c;
}

QuantizationConfig gpt2q_from_json(const json& j, const std::string& source) {
  QuantizationConfig c;
  const std::string method = get_string(j, "method", "", source);
  if (method != "int8-tensor")
    fail("{}: quantization_config.method \"{}\" is not supported for quant_method \"gpt2q\" (int8-tensor)", source,
         method);
  c.method = QuantMethod::int8_tensor;
  c.int8_scheme = get_bool(j, "symmetric", false, source) ? Int8Scheme::symmetric : Int8Scheme::affine;
  c.int8_granularity =
      get_bool(j, "per_channel", false, source) ? Int8Granularity::per_channel : Int8Granularity::per_tensor;
  c.compute_dtype = get_compute_dtype(j, "compute_dtype", source, false);
  const std::string layout = get_string(j, "weight_layout", "out_in", source);
  if (layout != "out_in")
    fail("{}: quantization_config.weight_layout \"{}\" is not supported (out_in)", source, layout);
  c.skip_modules = get_strings(j, "modules_to_not_convert", source);
  return c;
}

int64_t get_int(const json& j, const char* key, int64_t fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number_integer()) fail("{}: quantization_config.{} must be an integer", source, key);
  return j[key].get<int64_t>();
}

// transformers' GPTQConfig; absent keys take its defaults (sym true,
// group_size 128, desc_act false), except bits, which it requires.
QuantizationConfig gptq_from_json(const json& j, const std::string& source) {
  QuantizationConfig c;
  const std::string method = get_string(j, "gpt2q_method", "gptq", source);
  if (method == "gptq") {
    c.method = QuantMethod::gptq;
  } else if (method == "rtn") {
    c.method = QuantMethod::rtn;
  } else {
    fail("{}: quantization_config.gpt2q_method \"{}\" is not supported (rtn, gptq)", source, method);
  }
  if (!j.contains("bits") || j["bits"].is_null()) fail("{}: quantization_config has no 'bits'", source);
  const int64_t bits = get_int(j, "bits", 4, source);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    fail("{}: quantization_config.bits {} is not supported (2, 3, 4, 8)", source, bits);
  c.bits = static_cast<int>(bits);
  c.group_size = get_int(j, "group_size", 128, source);
  if (c.group_size == 0 || c.group_size < -1)
    fail("{}: quantization_config.group_size {} must be -1 (per channel) or a positive column count", source,
         c.group_size);
  c.sym = get_bool(j, "sym", true, source);
  c.desc_act = get_bool(j, "desc_act", false, source);
  if (j.contains("damp_percent") && j["damp_percent"].is_number()) c.damp_percent = j["damp_percent"].get<double>();
  const std::string format = get_string(j, "checkpoint_format", "gptq", source);
  if (format != "gptq")
    fail("{}: quantization_config.checkpoint_format \"{}\" is not supported (gptq, the v1 layout)", source, format);
  c.skip_modules = get_strings(j, "modules_to_not_convert", source);
  return c;
}

}  // namespace

std::optional<DType> parse_compute_dtype(std::string_view name) {
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "fp32" || name == "float32") return DType::F32;
  return std::nullopt;
}

std::string_view torch_dtype_name(DType compute) { return compute == DType::BF16 ? "bfloat16" : "float32"; }

DType QuantizationConfig::compute() const {
  const bool applies = method == QuantMethod::int8_tensor || is_4bit(method);
  return applies && compute_dtype == "bfloat16" ? DType::BF16 : DType::F32;
}

std::string_view quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::int8_tensor:
      return "int8-tensor";
    case QuantMethod::llm_int8:
      return "llm-int8";
    case QuantMethod::nf4:
      return "nf4";
    case QuantMethod::fp4:
      return "fp4";
    case QuantMethod::rtn:
      return "rtn";
    case QuantMethod::gptq:
      return "gptq";
  }
  return "?";
}

std::optional<QuantMethod> parse_quant_method(std::string_view name) {
  for (QuantMethod m : {QuantMethod::int8_tensor, QuantMethod::llm_int8, QuantMethod::nf4, QuantMethod::fp4,
                        QuantMethod::rtn, QuantMethod::gptq})
    if (name == quant_method_name(m)) return m;
  return std::nullopt;
}

bool is_4bit(QuantMethod m) { return m == QuantMethod::nf4 || m == QuantMethod::fp4; }

bool is_group_int(QuantMethod m) { return m == QuantMethod::rtn || m == QuantMethod::gptq; }

Code4 code4_of(QuantMethod m) {
  GPT2Q_CHECK(is_4bit(m), "code4_of({})", quant_method_name(m));
  return m == QuantMethod::nf4 ? Code4::nf4 : Code4::fp4;
}

json QuantizationConfig::to_json() const {
  json skip = skip_modules.empty() ? json(nullptr) : json(skip_modules);
  if (method == QuantMethod::int8_tensor) {
    return {{"quant_method", kGpt2q},
            {"method", "int8-tensor"},
            {"symmetric", int8_scheme == Int8Scheme::symmetric},
            {"per_channel", int8_granularity == Int8Granularity::per_channel},
            {"compute_dtype", compute_dtype},
            {"weight_layout", "out_in"},
            {"modules_to_not_convert", skip}};
  }
  if (is_group_int(method)) {
    // GPTQConfig's keys that describe the stored weights; what we did, not
    // transformers' defaults (sym there is true).
    return {{"quant_method", kGptq},
            {"bits", bits},
            {"group_size", group_size},
            {"sym", sym},
            {"desc_act", desc_act},
            {"damp_percent", damp_percent},
            {"true_sequential", false},
            {"checkpoint_format", "gptq"},
            {"gpt2q_method", std::string(quant_method_name(method))},
            {"modules_to_not_convert", skip}};
  }
  // Every key transformers' BitsAndBytesConfig.to_dict() writes.
  const bool in4 = is_4bit(method);
  return {{"_load_in_4bit", in4},
          {"_load_in_8bit", !in4},
          {"bnb_4bit_compute_dtype", compute_dtype},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", in4 ? std::string(quant_method_name(method)) : "fp4"},
          {"bnb_4bit_use_double_quant", in4 && double_quant},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", skip},
          {"llm_int8_threshold", static_cast<double>(llm_int8_threshold)},
          {"load_in_4bit", in4},
          {"load_in_8bit", !in4},
          {"quant_method", kBnb}};
}

QuantizationConfig QuantizationConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: quantization_config must be an object", source);
  const std::string qm = get_string(j, "quant_method", "", source);
  if (qm == kBnb) return bnb_from_json(j, source);
  if (qm == kGpt2q) return gpt2q_from_json(j, source);
  if (qm == kGptq) return gptq_from_json(j, source);
  fail("{}: quantization_config.quant_method \"{}\" is not supported (bitsandbytes, gptq, gpt2q)", source, qm);
}

std::string QuantizationConfig::describe() const {
  switch (method) {
    case QuantMethod::int8_tensor:
      return fmt::format("int8-tensor ({}, {}{})", int8_scheme == Int8Scheme::symmetric ? "symmetric" : "affine",
                         int8_granularity == Int8Granularity::per_channel ? "per channel" : "per tensor",
                         compute() == DType::BF16 ? ", bf16 compute" : "");
    case QuantMethod::llm_int8:
      return fmt::format("llm-int8 (threshold {})", llm_int8_threshold);
    case QuantMethod::nf4:
    case QuantMethod::fp4:
      return fmt::format("{} ({}{}{})", quant_method_name(method),
                         blocksize > 0 ? fmt::format("blocksize {}", blocksize) : "mixed block sizes",
                         double_quant ? ", double quant" : "", compute() == DType::BF16 ? ", bf16 compute" : "");
    case QuantMethod::rtn:
    case QuantMethod::gptq:
      return fmt::format("{} ({} bit, {}{}{})", quant_method_name(method), bits,
                         group_size < 0 ? "per channel" : fmt::format("group {}", group_size),
                         sym ? ", symmetric" : "", desc_act ? ", act-order" : "");
  }
  return "?";
}

}  // namespace gpt2q::quant
