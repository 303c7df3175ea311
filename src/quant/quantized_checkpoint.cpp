#include "quant/quantized_checkpoint.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/half.h"
#include "core/json_read.h"
#include "quant/gptq_format.h"

namespace gpt2q::quant {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

template <typename T>
Tensor tensor_of(const std::vector<T>& v, Shape shape) {
  return Tensor::from_vector(v, std::move(shape));
}

// bnb stores quant_map with +0.0 where the FP4 kernel's table has -0.0 (code 8).
std::vector<float> stored_quant_map(Code4 type) {
  std::vector<float> m;
  for (float v : code4_table(type)) m.push_back(v == 0.0f ? 0.0f : v);
  return m;
}

// Python's json.dumps layout (", " and ": "), as bnb's pack_dict_to_tensor writes it.
std::string quant_state_json(const Blockwise4Weight& w, std::string_view dtype) {
  std::string s = fmt::format(R"({{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": [{}, {}])",
                              code4_name(w.type), w.blocksize, dtype, w.out, w.in);
  if (w.nested)
    s += fmt::format(R"(, "nested_blocksize": {}, "nested_dtype": "float32", "nested_offset": {})", w.nested->blocksize,
                     static_cast<double>(w.nested->offset));
  return s + "}";
}

std::string module_of(const std::string& weight_name) {
  constexpr std::string_view kWeight = ".weight";
  GPT2Q_CHECK(weight_name.size() > kWeight.size() &&
                  weight_name.compare(weight_name.size() - kWeight.size(), kWeight.size(), kWeight) == 0,
              "'{}' is not a weight name", weight_name);
  return weight_name.substr(0, weight_name.size() - kWeight.size());
}

// Access to the tensors of one quantized weight, with errors that name the
// file and the tensor.
class WeightReader {
 public:
  WeightReader(const Checkpoint& ck, const std::string& weight_name)
      : ck_(ck), weight_(weight_name), module_(module_of(weight_name)) {}

  const std::string& weight_name() const { return weight_; }
  const std::string& module() const { return module_; }

  bool has(const std::string& name) const { return ck_.tensors.count(name) != 0; }
  std::string file_of(const std::string& name) const {
    auto it = ck_.source.find(name);
    return it != ck_.source.end() ? it->second : (ck_.dir / "model.safetensors").string();
  }
  [[noreturn]] void bad(const std::string& name, const std::string& problem) const {
    fail("{}: tensor '{}': {}", file_of(name), name, problem);
  }
  // The tensor `name` with dtype `dtype` (and `numel` elements unless negative).
  const Tensor& get(const std::string& name, DType dtype, int64_t numel, const std::string& what) const {
    auto it = ck_.tensors.find(name);
    if (it == ck_.tensors.end())
      fail("{}: missing tensor '{}' ({}) of quantized weight '{}'", file_of(weight_), name, what, weight_);
    const Tensor& t = it->second;
    if (t.dtype() != dtype)
      bad(name, fmt::format("dtype {}, expected {} ({})", dtype_name(t.dtype()), dtype_name(dtype), what));
    if (numel >= 0 && t.numel() != numel)
      bad(name, fmt::format("{} values (shape {}), expected {} ({})", t.numel(), shape_str(t.shape()), numel, what));
    return t;
  }
  template <typename T>
  std::vector<T> values(const std::string& name, DType dtype, int64_t numel, const std::string& what) const {
    const Tensor& t = get(name, dtype, numel, what);
    const T* p = static_cast<const T*>(t.raw());
    return std::vector<T>(p, p + numel);
  }
  std::vector<float> finite_scales(const std::string& name, int64_t numel, const std::string& what) const {
    std::vector<float> v = values<float>(name, DType::F32, numel, what);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]) || v[i] < 0.0f)
        bad(name, fmt::format("value {} at index {} is not a finite scale >= 0", v[i], i));
    return v;
  }

 private:
  const Checkpoint& ck_;
  std::string weight_, module_;
};

// bnb >= 0.45 writes 0 ("row"); older versions had tiled GPU layouts.
void check_weight_format(const WeightReader& r) {
  const std::string name = r.module() + ".weight_format";
  if (!r.has(name)) return;
  auto v = r.values<uint8_t>(name, DType::U8, 1, "bnb weight_format");
  if (v[0] != 0) r.bad(name, fmt::format("weight_format {} is not supported (0, row-major)", v[0]));
}

LlmInt8Weight read_llm_int8(const WeightReader& r, int64_t out, int64_t in) {
  LlmInt8Weight w;
  w.out = out;
  w.in = in;
  const std::string shape = fmt::format("int8 codes [{}, {}]", out, in);
  const Tensor& cb = r.get(r.weight_name(), DType::I8, out * in, shape);
  if (cb.shape() != Shape{out, in})
    r.bad(r.weight_name(), fmt::format("shape {}, expected [{}, {}]", shape_str(cb.shape()), out, in));
  w.cb.assign(static_cast<const int8_t*>(cb.raw()), static_cast<const int8_t*>(cb.raw()) + out * in);
  w.scb = r.finite_scales(r.module() + ".SCB", out, "one absmax per output row");
  check_weight_format(r);
  w.cb_row_sums.assign(static_cast<size_t>(out), 0);
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k) w.cb_row_sums[j] += w.cb[j * in + k];
  return w;
}

Int8Weight read_int8_affine(const WeightReader& r, const QuantizationConfig& cfg, int64_t out, int64_t in) {
  Int8Weight w;
  w.out = out;
  w.in = in;
  w.scheme = cfg.int8_scheme;
  w.granularity = cfg.int8_granularity;
  const std::string shape = fmt::format("int8 codes [{}, {}]", out, in);
  const Tensor& q = r.get(r.weight_name(), DType::I8, out * in, shape);
  if (q.shape() != Shape{out, in})
    r.bad(r.weight_name(), fmt::format("shape {}, expected [{}, {}]", shape_str(q.shape()), out, in));
  w.q.assign(static_cast<const int8_t*>(q.raw()), static_cast<const int8_t*>(q.raw()) + out * in);
  const int64_t groups = w.granularity == Int8Granularity::per_channel ? out : 1;
  const std::string what = groups == 1 ? "one scale per tensor" : "one scale per output row";
  w.scale = r.values<float>(r.module() + ".weight_scale", DType::F32, groups, what);
  for (size_t i = 0; i < w.scale.size(); ++i)
    if (!std::isfinite(w.scale[i]) || !(w.scale[i] > 0.0f))
      r.bad(r.module() + ".weight_scale", fmt::format("scale {} at index {} is not finite and > 0", w.scale[i], i));
  const std::string zp = r.module() + ".weight_zero_point";
  if (w.scheme == Int8Scheme::affine) {
    w.zero_point = r.values<int32_t>(zp, DType::I32, groups, "zero points, as the scales");
    for (size_t i = 0; i < w.zero_point.size(); ++i)
      if (w.zero_point[i] < -kMaxInt8ZeroPoint || w.zero_point[i] > kMaxInt8ZeroPoint)
        r.bad(zp, fmt::format("zero point {} at index {} is outside [{}, {}]", w.zero_point[i], i, -kMaxInt8ZeroPoint,
                              kMaxInt8ZeroPoint));
  } else if (r.has(zp)) {
    r.bad(zp, "a symmetric int8 weight has no zero point (quantization_config.symmetric is true)");
  }
  return w;
}

// The JSON of bnb's packed quant_state tensor.
nlohmann::json read_quant_state(const WeightReader& r, const std::string& name) {
  const Tensor& t = r.get(name, DType::U8, -1, "bnb quant_state JSON");
  const std::string_view text(static_cast<const char*>(t.raw()), t.nbytes());
  nlohmann::json j;
  try {
    j = parse_json(text, "quant_state");
  } catch (const Error& e) {
    r.bad(name, e.what());  // "quant_state: invalid JSON: ..." or "... nested deeper than ..."
  }
  if (!j.is_object()) r.bad(name, "quant_state JSON is not an object");
  return j;
}

int64_t json_int(const WeightReader& r, const std::string& name, const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer()) r.bad(name, fmt::format("quant_state has no integer '{}'", key));
  return j[key].get<int64_t>();
}

std::string json_str(const WeightReader& r, const std::string& name, const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) r.bad(name, fmt::format("quant_state has no string '{}'", key));
  return j[key].get<std::string>();
}

Blockwise4Weight read_blockwise4(const WeightReader& r, const QuantizationConfig& cfg, int64_t out, int64_t in) {
  const std::string& W = r.weight_name();
  const Code4 type = code4_of(cfg.method);
  const Code4 other = type == Code4::nf4 ? Code4::fp4 : Code4::nf4;
  const std::string state_name = W + ".quant_state.bitsandbytes__" + code4_name(type);
  if (const std::string n = W + ".quant_state.bitsandbytes__" + code4_name(other); r.has(n))
    r.bad(n, fmt::format("quant type {} does not match quantization_config.bnb_4bit_quant_type \"{}\"",
                         code4_name(other), code4_name(type)));
  const nlohmann::json qs = read_quant_state(r, state_name);

  Blockwise4Weight w;
  w.type = type;
  w.out = out;
  w.in = in;
  if (std::string qt = json_str(r, state_name, qs, "quant_type"); qt != code4_name(type))
    r.bad(state_name, fmt::format("quant_type \"{}\" does not match quantization_config.bnb_4bit_quant_type \"{}\"", qt,
                                  code4_name(type)));
  w.blocksize = json_int(r, state_name, qs, "blocksize");
  if (w.blocksize < 32 || w.blocksize > 4096 || (w.blocksize & (w.blocksize - 1)) != 0)
    r.bad(state_name, fmt::format("blocksize {} is not one of 32, 64, ..., 4096", w.blocksize));
  if (std::string dt = json_str(r, state_name, qs, "dtype"); dt != "float32" && dt != "float16" && dt != "bfloat16")
    r.bad(state_name, fmt::format("dtype \"{}\" is not float32, float16 or bfloat16", dt));
  if (!qs.contains("shape") || qs["shape"] != nlohmann::json::array({out, in}))
    r.bad(state_name, fmt::format("shape {} does not match the layer's [{}, {}]",
                                  qs.contains("shape") ? json_brief(qs["shape"]) : "(none)", out, in));

  const int64_t n = out * in, blocks = w.num_blocks();
  const Tensor& packed =
      r.get(W, DType::U8, (n + 1) / 2, fmt::format("packed 4-bit codes of [{}, {}], two per byte", out, in));
  w.packed.assign(static_cast<const uint8_t*>(packed.raw()), static_cast<const uint8_t*>(packed.raw()) + (n + 1) / 2);

  const std::vector<float> map = r.values<float>(W + ".quant_map", DType::F32, 16, "the 16-value code table");
  const auto& table = code4_table(type);
  for (size_t i = 0; i < 16; ++i)
    if (!(map[i] == table[i]))
      r.bad(W + ".quant_map",
            fmt::format("entry {} is {}, but {}'s table has {}", i, map[i], code4_name(type), table[i]));

  const bool nested = qs.contains("nested_blocksize") || r.has(W + ".nested_absmax");
  if (nested != cfg.double_quant)
    r.bad(nested ? W + ".nested_absmax" : state_name,
          fmt::format("double quantization is {} here but quantization_config.bnb_4bit_use_double_quant is {}",
                      nested ? "used" : "not used", cfg.double_quant));
  const std::string per_block = fmt::format("one per block of {} of {} values", w.blocksize, n);
  if (!nested) {
    w.absmax = r.finite_scales(W + ".absmax", blocks, "absmax, " + per_block);
    return w;
  }
  DoubleQuantAbsmax d;
  d.n = blocks;
  d.blocksize = json_int(r, state_name, qs, "nested_blocksize");
  if (d.blocksize != kNestedBlocksize)
    r.bad(state_name, fmt::format("nested_blocksize {} is not supported ({})", d.blocksize, kNestedBlocksize));
  if (std::string dt = json_str(r, state_name, qs, "nested_dtype"); dt != "float32")
    r.bad(state_name, fmt::format("nested_dtype \"{}\" is not supported (float32)", dt));
  if (!qs.contains("nested_offset") || !qs["nested_offset"].is_number() ||
      !std::isfinite(qs["nested_offset"].get<double>()))
    r.bad(state_name, "quant_state has no finite number 'nested_offset'");
  d.offset = qs["nested_offset"].get<float>();
  d.q = r.values<uint8_t>(W + ".absmax", DType::U8, blocks, "double-quantized absmax codes, " + per_block);
  d.state2 = r.finite_scales(W + ".nested_absmax", (blocks + d.blocksize - 1) / d.blocksize,
                             fmt::format("one scale per {} absmax values", d.blocksize));
  const std::vector<float> nmap = r.values<float>(W + ".nested_quant_map", DType::F32, 256, "the dynamic map");
  if (std::memcmp(nmap.data(), dynamic_map_signed().data(), 256 * sizeof(float)) != 0)
    r.bad(W + ".nested_quant_map", "is not bitsandbytes' create_dynamic_map(signed=True)");
  w.nested = std::move(d);
  return w;
}

// rtn / gptq: the four tensors of the GPTQ layout, checked against bits,
// [out, in] and the config's group size.
GroupQuantized read_group_int(const WeightReader& r, const QuantizationConfig& cfg, int64_t out, int64_t in) {
  const std::string& M = r.module();
  if (r.has(r.weight_name()))
    r.bad(r.weight_name(), "a GPTQ-layout weight is stored as qweight / qzeros / scales / g_idx, not as weight");
  GptqTensors t;
  t.qweight = r.get(M + ".qweight", DType::I32, -1, fmt::format("{}-bit codes of [{}, {}]", cfg.bits, out, in));
  t.qzeros = r.get(M + ".qzeros", DType::I32, -1, "packed zero points - 1");
  t.scales = r.get(M + ".scales", DType::F16, -1, "one scale per group and output");
  t.g_idx = r.get(M + ".g_idx", DType::I32, -1, "the group of each input column");
  const std::string file = r.file_of(M + ".qweight");
  GroupQuantized q;
  try {
    q = unpack_gptq(t, cfg.bits, out, in, cfg.sym, M);
  } catch (const Error& e) {
    fail("{}: {}", file, e.what());
  }
  const int64_t want = cfg.group_size < 0 ? 1 : (in + cfg.group_size - 1) / cfg.group_size;
  if (q.groups() != want)
    r.bad(M + ".scales", fmt::format("{} groups, but group_size {} of {} columns makes {}", q.groups(),
                                     cfg.group_size, in, want));
  q.group_size = cfg.group_size < 0 ? in : cfg.group_size;
  for (size_t i = 0; i < q.scales.size(); ++i)
    if (!std::isfinite(q.scales[i]))
      r.bad(M + ".scales", fmt::format("value {} at index {} is not finite", q.scales[i], i));
  return q;
}

// Every stored tensor of a quantized weight must be one the format uses.
void check_no_foreign_state(const Checkpoint& ck, const WeightReader& r, const std::vector<std::string>& allowed) {
  for (const auto& [name, t] : ck.tensors) {
    if (quant_state_owner(name) != r.weight_name()) continue;
    bool ok = false;
    for (const auto& a : allowed) ok |= name == a;
    if (!ok) r.bad(name, "is not part of this quantization format");
  }
}

}  // namespace

std::string quantized_format(const QuantizedWeight& w) {
  return std::visit(Overloaded{[](const Int8Weight& x) { return x.format(); },
                               [](const LlmInt8Weight&) { return std::string("llm-int8"); },
                               [](const Blockwise4Weight& x) { return x.format(); },
                               [](const GroupQuantized& x) {
                                 // QuantizedTensor::format_name()'s spelling.
                                 return fmt::format("int{}-g{}{}", x.bits, x.group_size, x.symmetric ? "-sym" : "");
                               }},
                    w);
}

size_t quantized_bytes(const QuantizedWeight& w) {
  return std::visit(Overloaded{[](const GroupQuantized& x) {
                                 // qweight + qzeros (I32) + scales (F16) + g_idx (I32), as stored.
                                 const auto words = [&](int64_t n) { return static_cast<size_t>(n * x.bits / 32) * 4; };
                                 const auto g = static_cast<size_t>(x.groups());
                                 return words(x.in) * static_cast<size_t>(x.out) + g * words(x.out) +
                                        g * static_cast<size_t>(x.out) * 2 + static_cast<size_t>(x.in) * 4;
                               },
                               [](const auto& x) { return x.bytes(); }},
                    w);
}

GroupQuantized group_quantized_as_stored(GroupQuantized q) {
  for (float& s : q.scales) s = half_to_float(float_to_half(s));
  return q;
}

int64_t quantized_out(const QuantizedWeight& w) {
  return std::visit([](const auto& x) { return x.out; }, w);
}

int64_t quantized_in(const QuantizedWeight& w) {
  return std::visit([](const auto& x) { return x.in; }, w);
}

namespace {

// A 1-D host tensor over the vector's memory: the vector moves into the
// storage's owner, so nothing is copied.
template <typename T>
Tensor adopt(std::vector<T>&& v, DType dtype) {
  auto owner = std::make_shared<std::vector<T>>(std::move(v));
  const auto n = static_cast<int64_t>(owner->size());
  void* data = owner->data();
  return Tensor::from_storage(Storage::borrow(data, owner->size() * sizeof(T), owner), 0, {n}, dtype);
}

}  // namespace

QuantizedTensor to_quantized_tensor(QuantizedWeight w) {
  if (auto* g = std::get_if<GroupQuantized>(&w)) return to_quantized_tensor(*g, "quantized weight");
  QuantizedTensor t;
  std::visit(Overloaded{[&](Int8Weight& q) {
                          t.format = view_of(q).format;
                          t.codes = adopt(std::move(q.q), DType::I8).view({q.out, q.in});
                          t.scales = adopt(std::move(q.scale), DType::F32);
                          if (!q.zero_point.empty()) t.zero_points = adopt(std::move(q.zero_point), DType::I32);
                        },
                        [&](LlmInt8Weight& q) {
                          t.format = view_of(q).format;
                          t.codes = adopt(std::move(q.cb), DType::I8).view({q.out, q.in});
                          t.scales = adopt(std::move(q.scb), DType::F32);
                          if (!q.cb_row_sums.empty()) t.row_sums = adopt(std::move(q.cb_row_sums), DType::I32);
                        },
                        [&](Blockwise4Weight& q) {
                          t.format = view_of(q).format;
                          t.codes = adopt(std::move(q.packed), DType::U8);
                          if (q.nested) {
                            t.nested_codes = adopt(std::move(q.nested->q), DType::U8);
                            t.nested_scales = adopt(std::move(q.nested->state2), DType::F32);
                          } else {
                            t.scales = adopt(std::move(q.absmax), DType::F32);
                          }
                        },
                        [&](GroupQuantized&) {}},
             w);
  t.validate("quantized weight");
  return t;
}

std::vector<float> dequantize(const QuantizedWeight& w) {
  std::vector<float> out(static_cast<size_t>(quantized_out(w) * quantized_in(w)));
  std::visit(Overloaded{[&](const Int8Weight& x) { dequantize_int8(x, out.data()); },
                        [&](const LlmInt8Weight& x) {
                          for (int64_t j = 0; j < x.out; ++j)
                            for (int64_t k = 0; k < x.in; ++k) out[j * x.in + k] = llm_int8_dequantized_weight(x, j, k);
                        },
                        [&](const Blockwise4Weight& x) { dequantize_4bit(x, out.data()); },
                        [&](const GroupQuantized& x) { out = x.dequantize(); }},
             w);
  return out;
}

bool is_conv1d_weight(std::string_view name) {
  if (name.substr(0, 2) != "h.") return false;
  for (std::string_view s : {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"})
    if (name.size() > s.size() && name.substr(name.size() - s.size()) == s) return true;
  return false;
}

std::pair<int64_t, int64_t> quantized_out_in(std::string_view name, const Shape& spec_shape) {
  GPT2Q_CHECK(spec_shape.size() == 2, "quantized weight {} must be 2-D, got {}", name, shape_str(spec_shape));
  if (is_conv1d_weight(name)) return {spec_shape[1], spec_shape[0]};
  return {spec_shape[0], spec_shape[1]};
}

std::vector<std::pair<std::string, Tensor>> quantized_weight_tensors(const std::string& W, const QuantizedWeight& qw,
                                                                     std::string_view dtype) {
  const std::string M = module_of(W);
  std::vector<std::pair<std::string, Tensor>> t;
  std::visit(
      Overloaded{
          [&](const Int8Weight& w) {
            t.emplace_back(W, tensor_of(w.q, {w.out, w.in}));
            const int64_t g = static_cast<int64_t>(w.scale.size());
            t.emplace_back(M + ".weight_scale", tensor_of(w.scale, {g}));
            if (!w.zero_point.empty()) t.emplace_back(M + ".weight_zero_point", tensor_of(w.zero_point, {g}));
          },
          [&](const LlmInt8Weight& w) {
            // Linear8bitLt._save_to_state_dict order: weight, SCB, weight_format.
            t.emplace_back(W, tensor_of(w.cb, {w.out, w.in}));
            t.emplace_back(M + ".SCB", tensor_of(w.scb, {w.out}));
            t.emplace_back(M + ".weight_format", tensor_of(std::vector<uint8_t>{0}, {}));
          },
          [&](const Blockwise4Weight& w) {
            t.emplace_back(W, tensor_of(w.packed, {static_cast<int64_t>(w.packed.size()), 1}));
            if (w.nested) {
              t.emplace_back(W + ".absmax", tensor_of(w.nested->q, {w.nested->n}));
              t.emplace_back(W + ".quant_map", tensor_of(stored_quant_map(w.type), {16}));
              t.emplace_back(W + ".nested_absmax",
                             tensor_of(w.nested->state2, {static_cast<int64_t>(w.nested->state2.size())}));
              const auto& dm = dynamic_map_signed();
              t.emplace_back(W + ".nested_quant_map", tensor_of(std::vector<float>(dm.begin(), dm.end()), {256}));
            } else {
              t.emplace_back(W + ".absmax", tensor_of(w.absmax, {static_cast<int64_t>(w.absmax.size())}));
              t.emplace_back(W + ".quant_map", tensor_of(stored_quant_map(w.type), {16}));
            }
            const std::string js = quant_state_json(w, dtype);
            t.emplace_back(W + ".quant_state.bitsandbytes__" + code4_name(w.type),
                           tensor_of(std::vector<uint8_t>(js.begin(), js.end()), {static_cast<int64_t>(js.size())}));
          },
          [&](const GroupQuantized& w) {
            // optimum's QuantLinear state dict order; no M.weight.
            GptqTensors p = pack_gptq(w, M);
            t.emplace_back(M + ".qweight", std::move(p.qweight));
            t.emplace_back(M + ".qzeros", std::move(p.qzeros));
            t.emplace_back(M + ".scales", std::move(p.scales));
            t.emplace_back(M + ".g_idx", std::move(p.g_idx));
          }},
      qw);
  return t;
}

void set_compute_dtype(Checkpoint& ck, DType compute) {
  const std::string config = (ck.dir / "config.json").string();
  if (!ck.quantized())
    fail("{}: --compute-dtype applies to a quantized checkpoint (int8-tensor, nf4, fp4); this one is not quantized",
         config);
  const QuantizationConfig c = QuantizationConfig::from_json(ck.quantization_config, config);
  if (!(c.method == QuantMethod::int8_tensor || is_4bit(c.method)))
    fail("{}: --compute-dtype applies to int8-tensor, nf4 and fp4 checkpoints, not {}", config,
         quant_method_name(c.method));
  ck.quantization_config[is_4bit(c.method) ? "bnb_4bit_compute_dtype" : "compute_dtype"] =
      std::string(torch_dtype_name(compute));
}

QuantizationConfig checkpoint_quantization(const Checkpoint& ck) {
  if (!ck.quantized()) fail("{}: not a quantized checkpoint (config.json has no quantization_config)", ck.dir.string());
  QuantizationConfig cfg = QuantizationConfig::from_json(ck.quantization_config, (ck.dir / "config.json").string());
  if (!is_4bit(cfg.method)) return cfg;
  // bnb keeps the block size per tensor; report it when they all agree (0 if not).
  std::optional<int64_t> common;
  for (const std::string& W : ck.quantized_weights) {
    auto it = ck.tensors.find(W + ".quant_state.bitsandbytes__" + code4_name(code4_of(cfg.method)));
    if (it == ck.tensors.end()) continue;
    // Only a summary: a bad quant_state is reported, naming it, when the weight is read.
    nlohmann::json qs;
    try {
      qs = parse_json(std::string_view(static_cast<const char*>(it->second.raw()), it->second.nbytes()), W);
    } catch (const Error&) {
    }
    const int64_t bs = qs.is_object() && qs.contains("blocksize") && qs["blocksize"].is_number_integer()
                           ? qs["blocksize"].get<int64_t>()
                           : 0;
    common = !common || *common == bs ? bs : 0;
  }
  if (common) cfg.blocksize = *common;
  return cfg;
}

QuantizedWeight read_quantized_weight(const Checkpoint& ck, const QuantizationConfig& cfg, const std::string& W,
                                      int64_t out, int64_t in) {
  WeightReader r(ck, W);
  const std::string M = r.module();
  switch (cfg.method) {
    case QuantMethod::int8_tensor:
      check_no_foreign_state(ck, r, {M + ".weight_scale", M + ".weight_zero_point"});
      return read_int8_affine(r, cfg, out, in);
    case QuantMethod::llm_int8:
      check_no_foreign_state(ck, r, {M + ".SCB", M + ".weight_format"});
      return read_llm_int8(r, out, in);
    case QuantMethod::nf4:
    case QuantMethod::fp4: {
      const std::string qs = W + ".quant_state.bitsandbytes__" + code4_name(code4_of(cfg.method));
      check_no_foreign_state(
          ck, r,
          {W + ".absmax", W + ".quant_map", W + ".nested_absmax", W + ".nested_quant_map", qs,
           W + ".quant_state.bitsandbytes__" + code4_name(cfg.method == QuantMethod::nf4 ? Code4::fp4 : Code4::nf4)});
      return read_blockwise4(r, cfg, out, in);
    }
    case QuantMethod::rtn:
    case QuantMethod::gptq:
      check_no_foreign_state(ck, r, {M + ".qweight", M + ".qzeros", M + ".scales", M + ".g_idx"});
      return read_group_int(r, cfg, out, in);
  }
  GPT2Q_CHECK(false, "unknown quantization method");
}

void validate_quantized_checkpoint(const Checkpoint& ck) {
  const QuantizationConfig cfg = checkpoint_quantization(ck);
  std::map<std::string, Shape> shapes;
  for (const auto& s : expected_tensors(ck.config, ck.kind)) shapes[s.name] = s.shape;
  shapes["lm_head.weight"] = {ck.config.vocab_size, ck.config.n_embd};
  for (const std::string& W : ck.quantized_weights) {
    auto [out, in] = quantized_out_in(W, shapes.at(W));
    read_quantized_weight(ck, cfg, W, out, in);
  }
}

}  // namespace gpt2q::quant
