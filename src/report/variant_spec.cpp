#include "report/variant_spec.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "quant/quant_config.h"

namespace gpt2q::report {

namespace {

const std::vector<std::string>& methods() {
  static const std::vector<std::string> m = {"fp32", "fp16", "bf16", "int8-tensor", "llm-int8", "nf4", "fp4"};
  return m;
}

bool is_4bit_method(const std::string& m) { return m == "nf4" || m == "fp4"; }
bool is_quant_method(const std::string& m) { return m == "int8-tensor" || m == "llm-int8" || is_4bit_method(m); }

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// "6", "0", "3.5" -> shortest text that reads back to the same float.
std::string float_text(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

std::string VariantSpec::file_name() const {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')
      out += c;
    else if (c == ':')
      out += '_';
    else
      out += '-';  // '=' and anything else
  }
  return out;
}

VariantSpec parse_variant_spec(std::string_view raw) {
  const std::string text = trim(raw);
  auto bad = [&](const std::string& why) -> void { fail("--variants: '{}': {}", text, why); };
  if (text.empty()) bad("empty variant");
  VariantSpec v;
  std::string body = text;
  if (size_t at = body.find('@'); at != std::string::npos) {
    if (at + 1 == body.size()) bad("nothing after '@' (expected a checkpoint directory)");
    v.ready_dir = body.substr(at + 1);
    body = body.substr(0, at);
  }
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t c = body.find(':', start);
    parts.push_back(body.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  auto& o = v.options;
  o.method = parts[0];
  if (std::find(methods().begin(), methods().end(), o.method) == methods().end())
    bad(fmt::format("unknown method '{}' (expected one of {})", o.method, fmt::join(methods(), ", ")));
  // fp16 / bf16 cast every tensor: that is what such a model is.
  if (o.method == "fp16" || o.method == "bf16") o.all_tensors = true;
  std::set<std::string> seen;
  bool keep_fp32 = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& m = parts[i];
    const size_t eq = m.find('=');
    const std::string key = m.substr(0, eq), value = eq == std::string::npos ? "" : m.substr(eq + 1);
    if (key.empty()) bad("empty modifier");
    if (!seen.insert(key).second) bad(fmt::format("modifier '{}' given twice", key));
    const bool takes_value = key == "threshold" || key == "block-size";
    if (takes_value == (eq == std::string::npos))
      bad(takes_value ? fmt::format("'{}' needs a value ({}=N)", key, key) : fmt::format("'{}' takes no value", key));
    auto need = [&](bool ok, const char* which) {
      if (!ok) bad(fmt::format("'{}' applies to {} only, not {}", key, which, o.method));
    };
    if (key == "per-channel") {
      need(o.method == "int8-tensor", "int8-tensor");
      o.per_channel = true;
    } else if (key == "symmetric") {
      need(o.method == "int8-tensor", "int8-tensor");
      o.symmetric = true;
    } else if (key == "threshold") {
      need(o.method == "llm-int8", "llm-int8");
      float t = 0;
      auto r = std::from_chars(value.data(), value.data() + value.size(), t);
      if (r.ec != std::errc() || r.ptr != value.data() + value.size() || !(t >= 0) || !std::isfinite(t))
        bad(fmt::format("threshold '{}' is not a finite number >= 0", value));
      o.threshold = t;
    } else if (key == "double-quant") {
      need(is_4bit_method(o.method), "nf4 and fp4");
      o.double_quant = true;
    } else if (key == "block-size") {
      need(is_4bit_method(o.method), "nf4 and fp4");
      int64_t bs = 0;
      auto r = std::from_chars(value.data(), value.data() + value.size(), bs);
      if (r.ec != std::errc() || r.ptr != value.data() + value.size() || bs < 32 || bs > 4096 || (bs & (bs - 1)))
        bad(fmt::format("block-size '{}' is not a power of two from 32 to 4096", value));
      o.block_size = bs;
    } else if (key == "bf16-compute") {
      need(o.method == "int8-tensor" || is_4bit_method(o.method), "int8-tensor, nf4 and fp4");
      o.compute_dtype = DType::BF16;
    } else if (key == "mlp-only" || key == "attn-only") {
      need(is_quant_method(o.method), "int8-tensor, llm-int8, nf4 and fp4");
      (key == "mlp-only" ? v.mlp_only : v.attn_only) = true;
      o.include.push_back(key == "mlp-only" ? "h.*.mlp.*" : "h.*.attn.*");
    } else if (key == "all-tensors") {
      need(o.method == "int8-tensor" || is_4bit_method(o.method), "int8-tensor, nf4 and fp4");
      o.all_tensors = true;
    } else if (key == "keep-fp32") {
      need(is_quant_method(o.method), "int8-tensor, llm-int8, nf4 and fp4");
      keep_fp32 = true;
      o.keep_dtype = DType::F32;
    } else {
      bad(fmt::format("unknown modifier '{}' (see gpt2q compare --help)", key));
    }
  }
  if (v.mlp_only && v.attn_only) bad("mlp-only and attn-only exclude each other");
  if ((v.mlp_only || v.attn_only) && o.all_tensors) bad("all-tensors cannot be combined with mlp-only / attn-only");
  if (v.ready_dir && parts.size() > 1 && (v.mlp_only || v.attn_only || keep_fp32))
    bad("with @DIR the checkpoint decides which tensors are quantized; drop mlp-only / attn-only / keep-fp32");
  quant::check_quantize_options(o);

  // Canonical name: method, then modifiers in the documented order.
  v.name = o.method;
  if (o.per_channel) v.name += ":per-channel";
  if (o.symmetric) v.name += ":symmetric";
  if (o.method == "llm-int8" && seen.count("threshold")) v.name += ":threshold=" + float_text(o.threshold);
  if (o.double_quant) v.name += ":double-quant";
  if (seen.count("block-size")) v.name += fmt::format(":block-size={}", o.block_size);
  if (o.compute_dtype == DType::BF16) v.name += ":bf16-compute";
  if (v.mlp_only) v.name += ":mlp-only";
  if (v.attn_only) v.name += ":attn-only";
  if (seen.count("all-tensors")) v.name += ":all-tensors";
  if (keep_fp32) v.name += ":keep-fp32";
  return v;
}

std::vector<VariantSpec> parse_variant_list(std::string_view list) {
  std::vector<VariantSpec> out;
  if (trim(list).empty()) fail("--variants: the list is empty");
  size_t start = 0;
  while (true) {
    const size_t c = list.find(',', start);
    out.push_back(parse_variant_spec(list.substr(start, c == std::string_view::npos ? list.npos : c - start)));
    for (size_t i = 0; i + 1 < out.size(); ++i)
      if (out[i].name == out.back().name || out[i].file_name() == out.back().file_name())
        fail("--variants: '{}' is listed twice", out.back().name);
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  return out;
}

std::string variant_spec_help() {
  return "Variants: comma-separated METHOD[:MODIFIER]...[@DIR]; the first is the baseline.\n"
         "  methods:   fp32 (the checkpoint as is), fp16, bf16 (every tensor cast), int8-tensor,\n"
         "             llm-int8, nf4, fp4\n"
         "  modifiers: per-channel, symmetric (int8-tensor); threshold=X (llm-int8, 0 = no outliers);\n"
         "             double-quant, block-size=N (nf4, fp4); bf16-compute (int8-tensor, nf4, fp4: bf16\n"
         "             activations and weights, fp32 sums, from 16 rows; bnb_4bit_compute_dtype=bfloat16);\n"
         "             mlp-only (h.*.mlp.*), attn-only (h.*.attn.*);\n"
         "             all-tensors (also wte, wpe, heads; int8-tensor, nf4, fp4); keep-fp32 (unquantized\n"
         "             tensors stay fp32, default fp16)\n"
         "  @DIR:      take the variant ready-made from a checkpoint dir (e.g. from gpt2q quantize)\n"
         "  examples:  fp32,fp16,int8-tensor:per-channel,int8-tensor:mlp-only,llm-int8:threshold=0,\n"
         "             nf4:double-quant,nf4:bf16-compute,fp4,nf4@models/nf4\n"
         "  default:   " + std::string(kDefaultVariants) + "\n";
}

std::string ready_made_mismatch(const VariantSpec& spec, const nlohmann::json& qc, std::string_view stored_dtype) {
  const auto& o = spec.options;
  if (qc.is_null()) {
    const std::string holds = stored_dtype == "float16" ? "fp16" : stored_dtype == "bfloat16" ? "bf16" : "fp32";
    if (holds != o.method) return fmt::format("holds an unquantized {} checkpoint, the spec asks for {}", holds, o.method);
    return "";
  }
  const auto c = quant::QuantizationConfig::from_json(qc, "config.json");
  const std::string holds(quant::quant_method_name(c.method));
  if (holds != o.method) return fmt::format("holds {}, the spec asks for {}", c.describe(), o.method);
  if (c.method == quant::QuantMethod::int8_tensor &&
      ((c.int8_granularity == quant::Int8Granularity::per_channel) != o.per_channel ||
       (c.int8_scheme == quant::Int8Scheme::symmetric) != o.symmetric))
    return fmt::format("holds {}, the spec asks for {}", c.describe(), spec.name);
  if (c.method == quant::QuantMethod::llm_int8 && c.llm_int8_threshold != o.threshold)
    return fmt::format("holds threshold {}, the spec asks for {}", c.llm_int8_threshold, o.threshold);
  if (quant::is_4bit(c.method) && (c.double_quant != o.double_quant || (c.blocksize != 0 && c.blocksize != o.block_size)))
    return fmt::format("holds {}, the spec asks for {}", c.describe(), spec.name);
  if (c.compute() != o.compute_dtype) return fmt::format("holds {}, the spec asks for {}", c.describe(), spec.name);
  return "";
}

std::string variant_name_for(const nlohmann::json& qc, std::string_view stored_dtype) {
  if (qc.is_null()) return stored_dtype == "float16" ? "fp16" : stored_dtype == "bfloat16" ? "bf16" : "fp32";
  const auto c = quant::QuantizationConfig::from_json(qc, "config.json");
  std::string name(quant::quant_method_name(c.method));
  if (c.method == quant::QuantMethod::int8_tensor) {
    if (c.int8_granularity == quant::Int8Granularity::per_channel) name += ":per-channel";
    if (c.int8_scheme == quant::Int8Scheme::symmetric) name += ":symmetric";
  }
  if (c.method == quant::QuantMethod::llm_int8 && c.llm_int8_threshold != 6.0f)
    name += ":threshold=" + float_text(c.llm_int8_threshold);
  if (quant::is_4bit(c.method)) {
    if (c.double_quant) name += ":double-quant";
    if (c.blocksize != 64 && c.blocksize != 0) name += fmt::format(":block-size={}", c.blocksize);
  }
  if (c.compute() == DType::BF16) name += ":bf16-compute";
  return name;
}

}  // namespace gpt2q::report
