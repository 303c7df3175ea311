#include "quant/checkpoint_quantizer.h"

#include <fmt/format.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/half.h"
#include "quant/conv1d_weight.h"
#include "quant/quant_config.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q::quant {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "transformer.";

std::optional<DType> cast_dtype(const std::string& method) {
  if (method == "fp16") return DType::F16;
  if (method == "bf16") return DType::BF16;
  if (method == "fp32") return DType::F32;
  return std::nullopt;
}

std::string_view config_dtype_name(DType t) {
  switch (t) {
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    default:
      return "float32";
  }
}

std::string format_of(DType t) {
  switch (t) {
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    default:
      return "f32";
  }
}

bool is_head(const std::string& name) { return name.rfind("lm_head.", 0) == 0 || name.rfind("score.", 0) == 0; }

// The name transformers stores (and names modules by) for a canonical name.
std::string stored_name(const std::string& name, ModelKind kind) {
  return kind != ModelKind::Base && !is_head(name) ? std::string(kPrefix) + name : name;
}

bool glob_match(const std::string& pattern, const std::string& name, ModelKind kind) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0 ||
         fnmatch(pattern.c_str(), stored_name(name, kind).c_str(), 0) == 0;
}

void check_finite(const Tensor& f32, const std::string& what) {
  const float* p = f32.data<float>();
  for (int64_t i = 0; i < f32.numel(); ++i)
    if (!std::isfinite(p[i])) fail("{}: non-finite value {} at index {}; every method needs finite weights", what, p[i], i);
}

// fp32 [n] -> `dtype`, refusing values the target cannot hold.
Tensor cast_tensor(const Tensor& src_f32, DType dtype, const std::string& name) {
  if (dtype == DType::F32) return src_f32.clone();
  Tensor out = Tensor::empty(src_f32.shape(), dtype);
  const float* s = src_f32.data<float>();
  uint16_t* d = out.data<uint16_t>();
  for (int64_t i = 0; i < src_f32.numel(); ++i) {
    d[i] = dtype == DType::F16 ? float_to_half(s[i]) : float_to_bf16(s[i]);
    const float back = dtype == DType::F16 ? half_to_float(d[i]) : bf16_to_float(d[i]);
    if (std::isinf(back) && std::isfinite(s[i]))
      fail("{}: value {} at index {} does not fit in {} (use --keep-dtype fp32)", name, s[i], i, dtype_name(dtype));
  }
  return out;
}

struct ErrorStats {
  double mse = 0, sqnr_db = 0, max_abs = 0;
};

ErrorStats error_stats(const float* ref, const float* got, int64_t n) {
  double signal = 0, noise = 0, max_abs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(got[i]) - static_cast<double>(ref[i]);
    signal += static_cast<double>(ref[i]) * ref[i];
    noise += e * e;
    max_abs = std::max(max_abs, std::abs(e));
  }
  ErrorStats s;
  s.mse = n > 0 ? noise / static_cast<double>(n) : 0.0;
  s.max_abs = max_abs;
  s.sqnr_db = noise == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(signal / noise);
  return s;
}

// [out, in] fp32 of a weight as the quantized formats want it.
std::vector<float> out_in_weights(const Tensor& w_f32, const std::string& name) {
  if (is_conv1d_weight(name)) return linear_weights_from_conv1d(w_f32, Tensor(), name).weight;
  const float* p = w_f32.data<float>();
  return std::vector<float>(p, p + w_f32.numel());
}

QuantizedWeight quantize_weight(const QuantizationConfig& cfg, const std::vector<float>& w, int64_t out, int64_t in,
                                const std::string& name, const std::map<std::string, GroupQuantized>* calibrated) {
  try {
    switch (cfg.method) {
      case QuantMethod::rtn:
        return group_quantized_as_stored(quantize_rtn(w.data(), out, in, {cfg.bits, cfg.group_size, cfg.sym}));
      case QuantMethod::gptq: {
        GPT2Q_CHECK(calibrated && calibrated->count(name), "gptq: no calibrated weight for {}", name);
        const GroupQuantized& q = calibrated->at(name);
        GPT2Q_CHECK(q.out == out && q.in == in, "gptq: {} has the wrong shape", name);
        return group_quantized_as_stored(q);
      }
      case QuantMethod::int8_tensor:
        return quantize_int8(w.data(), out, in, cfg.int8_scheme, cfg.int8_granularity);
      case QuantMethod::llm_int8:
        return quantize_llm_int8(w.data(), out, in);
      case QuantMethod::nf4:
      case QuantMethod::fp4:
        return quantize_4bit(w.data(), out, in,
                             Blockwise4Options{code4_of(cfg.method), cfg.blocksize, cfg.double_quant});
    }
  } catch (const Error& e) {
    fail("{}: {}", name, e.what());
  }
  GPT2Q_CHECK(false, "unknown quantization method");
}

QuantizationConfig config_from_options(const QuantizeOptions& opt) {
  QuantizationConfig c;
  c.method = *parse_quant_method(opt.method);
  c.int8_scheme = opt.symmetric ? Int8Scheme::symmetric : Int8Scheme::affine;
  c.int8_granularity = opt.per_channel ? Int8Granularity::per_channel : Int8Granularity::per_tensor;
  c.llm_int8_threshold = opt.threshold;
  c.blocksize = opt.block_size;
  c.double_quant = opt.double_quant;
  c.bits = opt.bits;
  c.group_size = opt.group_size;
  c.sym = opt.symmetric;
  c.desc_act = opt.act_order;
  c.damp_percent = opt.damp;
  c.compute_dtype = std::string(torch_dtype_name(opt.compute_dtype));
  return c;
}

// The tensors of `ck` in transformers' order, lm_head.weight after ln_f.
std::vector<std::pair<std::string, Shape>> ordered_specs(const Checkpoint& ck) {
  std::vector<std::pair<std::string, Shape>> v;
  for (const auto& s : expected_tensors(ck.config, ck.kind)) v.emplace_back(s.name, s.shape);
  if (ck.has("lm_head.weight") || ck.quantized_weights.count("lm_head.weight")) v.emplace_back("lm_head.weight", Shape{ck.config.vocab_size, ck.config.n_embd});
  return v;
}

std::set<std::string> select_tensors(const Checkpoint& ck, const QuantizeOptions& opt, bool cast) {
  std::vector<std::string> candidates;  // what the method can take
  std::set<std::string> selected;
  for (const auto& [name, shape] : ordered_specs(ck)) {
    if (!cast && shape.size() != 2) continue;
    candidates.push_back(name);
    if (opt.all_tensors || is_conv1d_weight(name)) selected.insert(name);
  }
  const std::string what = cast ? "tensor" : "2-D weight";
  if (!opt.include.empty()) {
    selected.clear();
    for (const auto& pattern : opt.include) {
      size_t matched = 0;
      for (const auto& name : candidates) {
        if (!glob_match(pattern, name, ck.kind)) continue;
        selected.insert(name);
        ++matched;
      }
      if (matched == 0)
        fail("--include '{}' matches no {} that {} can take (names look like 'h.0.mlp.c_fc.weight')", pattern, what,
             opt.method);
    }
  }
  for (const auto& pattern : opt.exclude) {
    size_t matched = 0;
    for (const auto& name : candidates) {
      if (!glob_match(pattern, name, ck.kind)) continue;
      selected.erase(name);
      ++matched;
    }
    if (matched == 0)
      fail("--exclude '{}' matches no {} that {} can take (names look like 'h.0.mlp.c_fc.weight')", pattern, what,
           opt.method);
  }
  if (selected.empty()) fail("the --include / --exclude patterns leave no tensor to {}", cast ? "convert" : "quantize");
  return selected;
}

// Modules bnb must leave alone (llm_int8_skip_modules): the block projections
// not selected and the heads. Null when it is exactly transformers' default.
std::vector<std::string> skip_modules(const Checkpoint& ck, const std::set<std::string>& selected) {
  std::vector<std::string> skip;
  bool default_selection = true;
  for (const auto& [name, shape] : ordered_specs(ck)) {
    if (is_conv1d_weight(name) != (selected.count(name) != 0)) default_selection = false;
    if (is_conv1d_weight(name) && !selected.count(name))
      skip.push_back(stored_name(name.substr(0, name.size() - 7), ck.kind));  // minus ".weight"
  }
  if (default_selection) return {};
  if (ck.kind == ModelKind::CausalLM && !selected.count("lm_head.weight")) skip.push_back("lm_head");
  if (ck.kind == ModelKind::SequenceClassification && !selected.count("score.weight")) skip.push_back("score");
  return skip;
}

size_t total_bytes(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  size_t n = 0;
  for (const auto& [name, t] : tensors) n += t.nbytes();
  return n;
}

}  // namespace

const std::vector<std::string>& quantize_method_names() {
  static const std::vector<std::string> names = {"int8-tensor", "llm-int8", "nf4", "fp4",  "rtn",
                                                 "gptq",        "fp16",     "bf16", "fp32"};
  return names;
}

DType parse_compute_dtype_option(const std::string& name) {
  const auto d = parse_compute_dtype(name);
  if (!d) fail("--compute-dtype must be fp32 or bf16, got '{}'", name);
  return *d;
}

DType parse_keep_dtype(const std::string& name) {
  if (name == "fp16") return DType::F16;
  if (name == "fp32") return DType::F32;
  fail("--keep-dtype '{}' is not fp16 or fp32", name);
}

void check_quantize_options(const QuantizeOptions& opt) {
  const auto& names = quantize_method_names();
  if (std::find(names.begin(), names.end(), opt.method) == names.end())
    fail("--method '{}' is not one of {}", opt.method, fmt::join(names, ", "));
  const auto method = parse_quant_method(opt.method);
  if (!method && (opt.symmetric || opt.per_channel || opt.double_quant))
    fail("--symmetric, --per-channel and --double-quant do not apply to --method {}", opt.method);
  const bool group_int = method && is_group_int(*method);
  if (opt.per_channel && method != QuantMethod::int8_tensor)
    fail("--per-channel applies to --method int8-tensor only, not {} (rtn / gptq: --group-size -1)", opt.method);
  if (opt.symmetric && method != QuantMethod::int8_tensor && !group_int)
    fail("--symmetric applies to --method int8-tensor, rtn and gptq only, not {}", opt.method);
  if (opt.bits != 2 && opt.bits != 3 && opt.bits != 4 && opt.bits != 8)
    fail("--bits {} is not supported (2, 3, 4 or 8)", opt.bits);
  if (opt.group_size == 0 || opt.group_size < -1)
    fail("--group-size {} must be -1 (per channel) or a positive number of columns", opt.group_size);
  if (!(opt.damp > 0.0) || !std::isfinite(opt.damp)) fail("--damp {} must be finite and > 0", opt.damp);
  if (opt.act_order && method != QuantMethod::gptq)
    fail("--act-order applies to --method gptq only, not {}", opt.method);
  if (opt.double_quant && !(method && is_4bit(*method)))
    fail("--double-quant applies to --method nf4 and fp4 only, not {}", opt.method);
  const int64_t bs = opt.block_size;
  if (bs < 32 || bs > 4096 || (bs & (bs - 1)) != 0)
    fail("--block-size {} is not a power of two from 32 to 4096 (bitsandbytes' block sizes)", bs);
  if (!(opt.threshold >= 0.0f) || !std::isfinite(opt.threshold))
    fail("--threshold {} must be finite and >= 0 (0 turns the outlier decomposition off)", opt.threshold);
  if (opt.compute_dtype != DType::F32 && opt.compute_dtype != DType::BF16)
    fail("--compute-dtype must be fp32 or bf16, got {}", dtype_name(opt.compute_dtype));
  if (opt.compute_dtype == DType::BF16 && !(method == QuantMethod::int8_tensor || (method && is_4bit(*method))))
    fail("--compute-dtype bf16 applies to --method int8-tensor, nf4 and fp4 only, not {}", opt.method);
  if (opt.keep_dtype != DType::F16 && opt.keep_dtype != DType::F32)
    fail("--keep-dtype must be fp16 or fp32, got {}", dtype_name(opt.keep_dtype));
}

std::set<std::string> selected_weights(const Checkpoint& src, const QuantizeOptions& opt) {
  check_quantize_options(opt);
  if (src.quantized())
    fail("{}: the checkpoint is already quantized ({}); quantize the original weights",
         (src.dir / "config.json").string(), src.quantization_config.value("quant_method", "?"));
  const std::set<std::string> selected = select_tensors(src, opt, cast_dtype(opt.method).has_value());
  if (opt.method == "gptq")
    for (const auto& name : selected)
      if (!is_conv1d_weight(name))
        fail("--method gptq quantizes the block projections only (attn.c_attn, attn.c_proj, mlp.c_fc, "
             "mlp.c_proj), not {}",
             name);
  return selected;
}

QuantizeResult quantize_checkpoint(const Checkpoint& src, const QuantizeOptions& opt,
                                   const std::map<std::string, GroupQuantized>* calibrated) {
  const std::set<std::string> selected = selected_weights(src, opt);
  const std::optional<DType> cast = cast_dtype(opt.method);
  if ((opt.method == "gptq") != (calibrated != nullptr))
    fail("--method {}: {}", opt.method,
         calibrated ? "takes no calibrated weights" : "needs calibration data (--calibration FILE)");
  QuantizationConfig qcfg;
  if (!cast) {
    qcfg = config_from_options(opt);
    qcfg.skip_modules = skip_modules(src, selected);
  }
  QuantizeResult r;
  Checkpoint& q = r.checkpoint;
  q.dir = src.dir;
  q.config = src.config;
  q.kind = src.kind;
  q.had_transformer_prefix = src.kind != ModelKind::Base;
  for (const auto& [name, shape] : ordered_specs(src)) {
    const Tensor& t = src.get(name);
    Tensor f32 = to_f32(t);
    // Every method (and a plain cast) refuses NaN/Inf: they make scales and
    // absmax meaningless and would be carried silently into every variant.
    check_finite(f32, fmt::format("{}: tensor '{}'", src.source.count(name) ? src.source.at(name) : src.dir.string(), name));
    TensorQuantReport rep;
    rep.name = name;
    rep.shape = t.shape();
    rep.numel = t.numel();
    std::vector<std::pair<std::string, Tensor>> stored;
    const bool chosen = selected.count(name) != 0;
    if (chosen && !cast) {
      auto [out, in] = quantized_out_in(name, shape);
      if (is_group_int(qcfg.method) && ((in * qcfg.bits) % 32 != 0 || (out * qcfg.bits) % 32 != 0))
        fail("{}: tensor '{}' [{}, {}] (out, in): the GPTQ layout packs {}-bit codes into 32-bit words along both "
             "dimensions, so each must be a multiple of {}",
             src.source.count(name) ? src.source.at(name) : src.dir.string(), name, out, in, qcfg.bits,
             qcfg.bits == 3 ? 32 : 32 / qcfg.bits);
      const std::vector<float> w = out_in_weights(f32, name);
      QuantizedWeight qw = quantize_weight(qcfg, w, out, in, name, calibrated);
      const std::vector<float> back = dequantize(qw);
      ErrorStats e = error_stats(w.data(), back.data(), out * in);
      rep.format = quantized_format(qw);
      rep.held_bytes = quantized_bytes(qw);
      rep.mse = e.mse;
      rep.sqnr_db = e.sqnr_db;
      rep.max_abs_error = e.max_abs;
      // bnb records the dtype of the tensor it quantized (and dequantizes to it).
      stored = quantized_weight_tensors(name, qw, config_dtype_name(t.dtype()));
      q.quantized_weights.insert(name);
    } else {
      const DType dtype = chosen ? *cast : opt.keep_dtype;
      Tensor c = cast_tensor(
          f32, dtype,
          fmt::format("{}: tensor '{}'", src.source.count(name) ? src.source.at(name) : src.dir.string(), name));
      Tensor back = to_f32(c);
      ErrorStats e = error_stats(f32.data<float>(), back.data<float>(), f32.numel());
      rep.format = format_of(dtype);
      rep.mse = e.mse;
      rep.sqnr_db = e.sqnr_db;
      rep.max_abs_error = e.max_abs;
      stored.emplace_back(name, std::move(c));
    }
    rep.stored_bytes = total_bytes(stored);
    for (auto& [n, tensor] : stored) {
      q.tensors[n] = std::move(tensor);
      q.source[n] = "(quantized in memory)";
    }
    (chosen ? r.tensors : r.kept).push_back(std::move(rep));
  }
  const DType wte_dtype = q.quantized_weights.count("wte.weight") ? opt.keep_dtype : q.tensors.at("wte.weight").dtype();
  q.config.dtype = std::string(config_dtype_name(wte_dtype));
  q.config.raw.erase("torch_dtype");
  if (!cast) {
    q.quantization_config = qcfg.to_json();
    q.config.raw["quantization_config"] = q.quantization_config;
  } else {
    q.config.raw.erase("quantization_config");
  }
  return r;
}

namespace {

// A killed quantize leaves NAME.tmp-PID-XXXXXX behind. Such directories of
// the same output whose process is gone are removed; a live one (another
// quantize writing the same output right now) is left alone.
void remove_stale_temp_dirs(const fs::path& parent, const std::string& name) {
  static const std::regex pattern(R"(\.tmp-([0-9]{1,10})-[A-Za-z0-9]{6})");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string f = e.path().filename().string();
    std::smatch m;
    if (f.size() <= name.size() || f.compare(0, name.size(), name) != 0) continue;
    const std::string rest = f.substr(name.size());
    if (!std::regex_match(rest, m, pattern) || !e.is_directory(ec)) continue;
    const long long pid = std::stoll(m[1].str());
    if (pid <= 0 || pid > std::numeric_limits<pid_t>::max()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    fs::remove_all(e.path(), ec);
  }
}

}  // namespace

void save_quantized_checkpoint(const Checkpoint& q, const fs::path& out, const fs::path& copy_from) {
  std::error_code ec;
  if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    fail("{}: already exists (choose a new --out directory)", out.string());
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) fail("{}: no such directory (for --out {})", parent.string(), out.string());
  remove_stale_temp_dirs(parent, out.filename().string());
  std::string tmpl =
      (parent / (out.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data()))
    fail("{}: cannot create a temporary directory ({})", parent.string(), std::strerror(errno));
  const fs::path tmp = tmpl;
  try {
    std::vector<std::pair<std::string, Tensor>> stored;
    for (const auto& [name, shape] : ordered_specs(q)) {
      // Each weight is followed by its quantization state, as bnb's state dict orders it.
      if (q.has(name)) stored.emplace_back(stored_name(name, q.kind), q.get(name));  // GPTQ's layout: no weight
      for (const auto& [n, t] : q.tensors)
        if (quant_state_owner(n) == name) stored.emplace_back(stored_name(n, q.kind), t);
    }
    write_safetensors(tmp / "model.safetensors", stored, {{"format", "pt"}});
    GPT2Config cfg = q.config;
    cfg.architectures = {std::string(architecture_name(q.kind))};
    cfg.save(tmp / "config.json");
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json", "encoder.json", "vocab.bpe", "generation_config.json"}) {
      if (copy_from.empty() || !fs::is_regular_file(copy_from / f, ec)) continue;
      fs::copy_file(copy_from / f, tmp / f, ec);
      if (ec) fail("{}: cannot copy to {} ({})", (copy_from / f).string(), tmp.string(), ec.message());
    }
    if (fs::exists(out, ec)) fs::remove(out, ec);  // an empty directory
    fs::rename(tmp, out, ec);
    if (ec) fail("{}: cannot rename {} to it ({})", out.string(), tmp.string(), ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace gpt2q::quant
