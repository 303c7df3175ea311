// fuzz_quant_state: the quantization state of one quantized weight, as
// read_quantized_weight checks it when a quantized checkpoint loads: bnb's
// quant_state JSON (quant_type, blocksize, dtype, shape, nested_*), and the
// dtypes and shapes of absmax / quant_map / nested_* / SCB / weight_format /
// weight_scale / weight_zero_point. A weight that passes is dequantized and
// turned into the QuantizedTensor the layers run.
//
// Input: byte 0 picks the method (bits 0-2, kCases), the layer's [out, in]
// (bits 3-4, kShapes) and, bit 5, files the JSON under the other 4-bit type's
// name; then a 4-byte little-endian length n and n bytes of quant_state JSON
// (the U8 tensor W.quant_state.bitsandbytes__<type>; no tensor when n = 0 or
// the input is shorter); the rest is a safetensors file with the weight's
// other tensors, under canonical names. The JSON sits outside the
// safetensors file so that mutating it needs no fix-up of data_offsets.
// Seeds: generated below from the real quantizers, one per case and shape.
#include <cstring>
#include <filesystem>

#include "core/file_util.h"
#include "io/safetensors.h"
#include "quant/quantized_checkpoint.h"
#include "support/fuzz_support.h"

using namespace gpt2q;
using namespace gpt2q::quant;
using gpt2q::fuzz::nested;

namespace {

const std::string kWeight = "h.0.attn.c_attn.weight";

struct Case {
  const char* name;
  QuantMethod method;
  bool double_quant;
  Int8Scheme scheme;
  Int8Granularity granularity;
};
constexpr Case kCases[8] = {
    {"nf4", QuantMethod::nf4, false, {}, {}},
    {"fp4", QuantMethod::fp4, false, {}, {}},
    {"nf4-dq", QuantMethod::nf4, true, {}, {}},
    {"fp4-dq", QuantMethod::fp4, true, {}, {}},
    {"llm-int8", QuantMethod::llm_int8, false, {}, {}},
    {"int8-tensor-affine", QuantMethod::int8_tensor, false, Int8Scheme::affine, Int8Granularity::per_tensor},
    {"int8-channel-sym", QuantMethod::int8_tensor, false, Int8Scheme::symmetric, Int8Granularity::per_channel},
    {"int8-channel-affine", QuantMethod::int8_tensor, false, Int8Scheme::affine, Int8Granularity::per_channel},
};
// Odd numel (packing), blocks across rows (in % 64 != 0), more than 256 blocks (nested).
constexpr std::pair<int64_t, int64_t> kShapes[4] = {{8, 64}, {16, 96}, {3, 5}, {96, 200}};

QuantizationConfig config_of(const Case& c) {
  QuantizationConfig q;
  q.method = c.method;
  q.double_quant = c.double_quant;
  q.int8_scheme = c.scheme;
  q.int8_granularity = c.granularity;
  return q;
}

std::string le32(uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// One seed: the real quantizer's output for case `ci`, shape `si`, with the
// quant_state JSON replaced by `json` when given.
std::string seed(const std::filesystem::path& dir, int ci, int si, const std::string* json = nullptr) {
  const Case& c = kCases[ci];
  const auto [out, in] = kShapes[si];
  std::vector<float> w(static_cast<size_t>(out * in));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 7919 % 201)) / 100.0f - 1.0f;
  QuantizedWeight qw;
  if (is_4bit(c.method))
    qw = quantize_4bit(w.data(), out, in, {code4_of(c.method), 64, c.double_quant});
  else if (c.method == QuantMethod::llm_int8)
    qw = quantize_llm_int8(w.data(), out, in);
  else
    qw = quantize_int8(w.data(), out, in, c.scheme, c.granularity);
  std::string state;
  std::vector<std::pair<std::string, Tensor>> rest;
  for (auto& [name, t] : quantized_weight_tensors(kWeight, qw, "float32")) {
    if (name.find(".quant_state.") != std::string::npos)
      state.assign(static_cast<const char*>(t.raw()), t.nbytes());
    else
      rest.emplace_back(name, t);
  }
  if (json) state = *json;
  const auto tmp = dir / ".tmp.safetensors";
  write_safetensors(tmp, rest);
  std::string bytes(1, static_cast<char>(ci | (si << 3)));
  bytes += le32(static_cast<uint32_t>(state.size())) + state + read_file(tmp);
  std::filesystem::remove(tmp);
  return bytes;
}

void write_seeds(const std::filesystem::path& dir) {
  for (int ci = 0; ci < 8; ++ci)
    for (int si = 0; si < 4; ++si)
      fuzz::write_seed(dir, fmt::format("gen-{}-{}x{}", kCases[ci].name, kShapes[si].first, kShapes[si].second),
                       seed(dir, ci, si));
  // Hostile quant_state JSON on a valid nf4 (-dq) weight: the issue-14 cases.
  constexpr size_t kDeep = 100'000;
  const std::string head = R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", )";
  const std::map<std::string, std::pair<int, std::string>> hostile = {
      {"deep-shape", {0, head + R"("shape": )" + nested("[", "]", kDeep) + "}"}},
      {"deep-document", {0, nested("[", "]", kDeep)}},
      {"deep-quant-type", {0, R"({"quant_type": )" + nested("[", "]", kDeep) + "}"}},
      {"deep-unknown-key", {0, head + R"("shape": [8, 64], "x": )" + nested("{\"a\":", "}", kDeep / 2, "1") + "}"}},
      {"deep-nested-offset", {2, head + R"("shape": [8, 64], "nested_blocksize": 256, "nested_dtype": "float32", )"
                                        R"("nested_offset": )" + nested("[", "]", kDeep) + "}"}},
      {"huge-blocksize", {0, R"({"quant_type": "nf4", "blocksize": 4611686018427387904, "dtype": "float32", "shape": [8, 64]})"}},
      {"negative-blocksize", {0, R"({"quant_type": "nf4", "blocksize": -64, "dtype": "float32", "shape": [8, 64]})"}},
      {"nested-offset-huge", {2, head + R"("shape": [8, 64], "nested_blocksize": 256, "nested_dtype": "float32", )"
                                        R"("nested_offset": 1e300})"}},
      {"huge-key", {0, head + R"("shape": [8, 64], ")" + std::string(1'000'000, 'k') + "\": 1}"}},
  };
  for (const auto& [name, v] : hostile) fuzz::write_seed(dir, "hostile-" + name, seed(dir, v.first, 0, &v.second));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static fuzz::MemFile file("model.safetensors");
  const Case& c = kCases[data[0] & 7];
  const int64_t out = kShapes[(data[0] >> 3) & 3].first, in = kShapes[(data[0] >> 3) & 3].second;
  const bool other_type = (data[0] >> 5) & 1;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view json;
  if (rest.size() >= 4) {
    uint32_t n = 0;
    for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(rest[i]);
    if (n <= rest.size() - 4) {
      json = rest.substr(4, n);
      rest.remove_prefix(4 + n);
    }
  }
  file.set(rest);

  fuzz::expect_only_errors([&] {
    Checkpoint ck;
    ck.dir = "fuzz";
    ck.files.push_back(SafetensorsFile::open(file.path()));
    for (const auto& [name, t] : ck.files.back().tensors) {
      ck.tensors.emplace(name, t);
      ck.source.emplace(name, file.path().string());
    }
    if (!json.empty()) {
      Code4 type = c.method == QuantMethod::fp4 ? Code4::fp4 : Code4::nf4;
      if (other_type) type = type == Code4::nf4 ? Code4::fp4 : Code4::nf4;
      const std::string name = kWeight + ".quant_state.bitsandbytes__" + code4_name(type);
      ck.tensors[name] = Tensor::from_vector(std::vector<uint8_t>(json.begin(), json.end()),
                                             {static_cast<int64_t>(json.size())});
    }
    ck.quantization_config = config_of(c).to_json();
    ck.quantized_weights = {kWeight};

    const QuantizationConfig cfg = checkpoint_quantization(ck);
    QuantizedWeight w = read_quantized_weight(ck, cfg, kWeight, out, in);
    if (quantized_out(w) != out || quantized_in(w) != in) fuzz::finding("read_quantized_weight changed [out, in]");
    (void)quantized_format(w);
    (void)quantized_bytes(w);
    std::vector<float> values = dequantize(w);
    if (values.size() != static_cast<size_t>(out * in)) fuzz::finding("dequantize returned the wrong count");
    QuantizedTensor t = to_quantized_tensor(std::move(w));
  });
  return 0;
}
