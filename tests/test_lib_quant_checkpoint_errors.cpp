// Corrupt quantized checkpoints: each is rejected with one error that names
// the file and the tensor (or config.json and the key), never a crash.
#include <nlohmann/json.hpp>

#include "test_lib_quant_support.h"

using namespace gpt2q;
using namespace gpt2q::test;
namespace fs = std::filesystem;
using nlohmann::json;
using Tensors = std::map<std::string, Tensor>;  // stored names ("transformer.h.0...")

namespace {

// A saved quantized checkpoint of the small model, one per method string.
fs::path quantized_dir(const std::string& method, bool double_quant = false) {
  static std::map<std::string, fs::path> cache;
  const std::string key = method + (double_quant ? "-dq" : "");
  if (cache.count(key)) return cache[key];
  const GPT2Config c = small_quant_config();
  const fs::path src = write_small_checkpoint("qerr_src", c);
  quant::QuantizeOptions o;
  o.method = method;
  o.double_quant = double_quant;
  const fs::path out = temp_dir("qerr_" + key) / "q";
  quant::save_quantized_checkpoint(quant::quantize_checkpoint(Checkpoint::load(src), o).checkpoint, out, src);
  return cache[key] = out;
}

// A copy of `dir` with its tensors and config.json edited.
fs::path corrupted(const fs::path& dir, const std::function<void(Tensors&)>& edit_tensors,
                   const std::function<void(json&)>& edit_config = nullptr) {
  const fs::path out = temp_dir("qerr_bad") / "q";
  fs::create_directories(out);
  SafetensorsFile f = SafetensorsFile::open(dir / "model.safetensors");
  Tensors t;
  for (const auto& [name, tensor] : f.tensors) t[name] = tensor.clone();
  edit_tensors(t);
  write_safetensors(out / "model.safetensors", std::vector<std::pair<std::string, Tensor>>(t.begin(), t.end()));
  json cfg = json::parse(read_file(dir / "config.json"));
  if (edit_config) edit_config(cfg);
  write_file_atomic(out / "config.json", cfg.dump(2));
  return out;
}

std::string load_error(const fs::path& dir) {
  return error_of([&] { GPT2Model::load(dir); });
}

Tensor json_tensor(const json& j) {
  const std::string s = j.dump();
  return Tensor::from_vector(std::vector<uint8_t>(s.begin(), s.end()), {static_cast<int64_t>(s.size())});
}

json quant_state(const Tensor& t) { return json::parse(std::string(static_cast<const char*>(t.raw()), t.nbytes())); }

Tensor drop_last(const Tensor& t) {
  Tensor out = Tensor::empty({t.numel() - 1}, t.dtype());
  std::memcpy(out.raw(), t.raw(), out.nbytes());
  return out;
}

const std::string kQs = "transformer.h.0.attn.c_attn.weight.quant_state.bitsandbytes__nf4";

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST(CorruptQuantizedCheckpoint, BadBlockSize) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    json qs = quant_state(t.at(kQs));
    qs["blocksize"] = 48;
    t[kQs] = json_tensor(qs);
  });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, (bad / "model.safetensors").string());
  EXPECT_HAS(e, "h.0.attn.c_attn.weight.quant_state.bitsandbytes__nf4");
  EXPECT_HAS(e, "blocksize 48 is not one of 32, 64, ..., 4096");
}

TEST(CorruptQuantizedCheckpoint, BlockSizeThatDisagreesWithTheAbsmaxCount) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    json qs = quant_state(t.at(kQs));
    qs["blocksize"] = 128;
    t[kQs] = json_tensor(qs);
  });
  EXPECT_HAS(load_error(bad), "'h.0.attn.c_attn.weight.absmax': 768 values (shape [768]), expected 384");
}

TEST(CorruptQuantizedCheckpoint, AbsmaxLengthMismatch) {
  const fs::path bad = corrupted(quantized_dir("fp4"), [](Tensors& t) {
    t["transformer.h.1.mlp.c_fc.weight.absmax"] = drop_last(t.at("transformer.h.1.mlp.c_fc.weight.absmax"));
  });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, (bad / "model.safetensors").string());
  EXPECT_HAS(e, "tensor 'h.1.mlp.c_fc.weight.absmax': 1023 values");
  EXPECT_HAS(e, "expected 1024");
}

TEST(CorruptQuantizedCheckpoint, NestedAbsmaxLengthMismatch) {
  const fs::path bad = corrupted(quantized_dir("nf4", true), [](Tensors& t) {
    t["transformer.h.1.mlp.c_fc.weight.nested_absmax"] =
        drop_last(t.at("transformer.h.1.mlp.c_fc.weight.nested_absmax"));
  });
  EXPECT_HAS(load_error(bad), "tensor 'h.1.mlp.c_fc.weight.nested_absmax': 3 values");
}

TEST(CorruptQuantizedCheckpoint, PackedSizeMismatch) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    t["transformer.h.0.attn.c_proj.weight"] = drop_last(t.at("transformer.h.0.attn.c_proj.weight"));
  });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, "tensor 'h.0.attn.c_proj.weight': 8191 values");
  EXPECT_HAS(e, "packed 4-bit codes of [128, 128]");
}

TEST(CorruptQuantizedCheckpoint, ShapeInQuantStateDisagreesWithTheConfig) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    json qs = quant_state(t.at(kQs));
    qs["shape"] = {128, 384};  // transposed
    t[kQs] = json_tensor(qs);
  });
  EXPECT_HAS(load_error(bad), "shape [128,384] does not match the layer's [384, 128]");
}

TEST(CorruptQuantizedCheckpoint, UnknownQuantMethod) {
  const fs::path bad = corrupted(
      quantized_dir("nf4"), [](Tensors&) {}, [](json& c) { c["quantization_config"]["quant_method"] = "awq"; });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, (bad / "config.json").string());
  EXPECT_HAS(e, "quant_method \"awq\" is not supported");
}

TEST(CorruptQuantizedCheckpoint, UnknownQuantType) {
  const fs::path bad = corrupted(
      quantized_dir("nf4"), [](Tensors&) {}, [](json& c) { c["quantization_config"]["bnb_4bit_quant_type"] = "nf3"; });
  EXPECT_HAS(load_error(bad), "bnb_4bit_quant_type \"nf3\" is not supported (nf4, fp4)");
}

TEST(CorruptQuantizedCheckpoint, QuantTypeOfTheTensorDisagreesWithTheConfig) {
  const fs::path bad = corrupted(
      quantized_dir("nf4"), [](Tensors&) {}, [](json& c) { c["quantization_config"]["bnb_4bit_quant_type"] = "fp4"; });
  EXPECT_HAS(load_error(bad), "quant type nf4 does not match quantization_config.bnb_4bit_quant_type \"fp4\"");
}

TEST(CorruptQuantizedCheckpoint, BothOrNeitherBitWidth) {
  const fs::path bad = corrupted(
      quantized_dir("nf4"), [](Tensors&) {}, [](json& c) { c["quantization_config"]["load_in_8bit"] = true; });
  EXPECT_HAS(load_error(bad), "exactly one of load_in_4bit and load_in_8bit");
}

TEST(CorruptQuantizedCheckpoint, DoubleQuantFlagDisagreesWithTheTensors) {
  const fs::path bad = corrupted(
      quantized_dir("nf4", true), [](Tensors&) {},
      [](json& c) { c["quantization_config"]["bnb_4bit_use_double_quant"] = false; });
  EXPECT_HAS(load_error(bad),
             "double quantization is used here but quantization_config.bnb_4bit_use_double_quant is false");
}

TEST(CorruptQuantizedCheckpoint, MissingQuantState) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) { t.erase(kQs); });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, "missing tensor 'h.0.attn.c_attn.weight.quant_state.bitsandbytes__nf4'");
}

TEST(CorruptQuantizedCheckpoint, QuantStateIsNotJson) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    t[kQs] = Tensor::from_vector(std::vector<uint8_t>{'{', 'x'}, {2});
  });
  EXPECT_HAS(load_error(bad), "quant_state: invalid JSON");
}

TEST(CorruptQuantizedCheckpoint, QuantStateShapeNestedTooDeep) {
  // 200,000 levels: once a stack overflow when the shape was printed in the error.
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    std::string text = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": " +
                       std::string(200000, '[') + std::string(200000, ']') + "}";
    t[kQs] = Tensor::from_vector(std::vector<uint8_t>(text.begin(), text.end()), {static_cast<int64_t>(text.size())});
  });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, (bad / "model.safetensors").string());
  EXPECT_HAS(e, "h.0.attn.c_attn.weight.quant_state.bitsandbytes__nf4");
  EXPECT_HAS(e, "JSON nested deeper than 64 levels");
  EXPECT_LT(e.size(), 400u);
}

TEST(CorruptQuantizedCheckpoint, QuantStateShapeIsQuotedBriefly) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    json qs = quant_state(t.at(kQs));
    qs["shape"] = std::vector<int>(100000, 7);
    t[kQs] = json_tensor(qs);
  });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, "shape [7,7,7");
  EXPECT_LT(e.size(), 400u) << e.substr(0, 400);
}

TEST(CorruptQuantizedCheckpoint, WrongQuantMap) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    Tensor m = t.at("transformer.h.0.attn.c_attn.weight.quant_map").clone();
    m.data<float>()[3] = 0.5f;
    t["transformer.h.0.attn.c_attn.weight.quant_map"] = m;
  });
  EXPECT_HAS(load_error(bad), "'h.0.attn.c_attn.weight.quant_map': entry 3 is 0.5");
}

TEST(CorruptQuantizedCheckpoint, NegativeOrNonFiniteAbsmax) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    Tensor a = t.at("transformer.h.0.mlp.c_proj.weight.absmax").clone();
    a.data<float>()[5] = std::nanf("");
    t["transformer.h.0.mlp.c_proj.weight.absmax"] = a;
  });
  EXPECT_HAS(load_error(bad), "'h.0.mlp.c_proj.weight.absmax': value nan at index 5 is not a finite scale");
}

TEST(CorruptQuantizedCheckpoint, ScbLengthMismatch) {
  const fs::path bad = corrupted(quantized_dir("llm-int8"), [](Tensors& t) {
    t["transformer.h.0.mlp.c_fc.SCB"] = drop_last(t.at("transformer.h.0.mlp.c_fc.SCB"));
  });
  EXPECT_HAS(load_error(bad),
             "tensor 'h.0.mlp.c_fc.SCB': 511 values (shape [511]), expected 512 (one absmax per output row)");
}

TEST(CorruptQuantizedCheckpoint, Int8WeightWithTheWrongShape) {
  const fs::path bad = corrupted(quantized_dir("llm-int8"), [](Tensors& t) {
    t["transformer.h.0.mlp.c_fc.weight"] = t.at("transformer.h.0.mlp.c_fc.weight").view({128, 512});
  });
  EXPECT_HAS(load_error(bad), "tensor 'h.0.mlp.c_fc.weight': shape [128, 512], expected [512, 128]");
}

TEST(CorruptQuantizedCheckpoint, UnsupportedWeightFormat) {
  const fs::path bad = corrupted(quantized_dir("llm-int8"), [](Tensors& t) {
    t["transformer.h.0.attn.c_proj.weight_format"] = Tensor::from_vector(std::vector<uint8_t>{2}, {});
  });
  EXPECT_HAS(load_error(bad), "'h.0.attn.c_proj.weight_format': weight_format 2 is not supported");
}

TEST(CorruptQuantizedCheckpoint, Int8ZeroScale) {
  const fs::path bad = corrupted(quantized_dir("int8-tensor"), [](Tensors& t) {
    t["transformer.h.1.attn.c_attn.weight_scale"] = Tensor::from_vector(std::vector<float>{0.0f}, {1});
  });
  EXPECT_HAS(load_error(bad), "'h.1.attn.c_attn.weight_scale': scale 0 at index 0 is not finite and > 0");
}

TEST(CorruptQuantizedCheckpoint, Int8ZeroPointOutOfRange) {
  const fs::path bad = corrupted(quantized_dir("int8-tensor"), [](Tensors& t) {
    t["transformer.h.1.attn.c_attn.weight_zero_point"] = Tensor::from_vector(std::vector<int32_t>{100000}, {1});
  });
  const std::string e = load_error(bad);
  EXPECT_HAS(e, (bad / "model.safetensors").string());
  EXPECT_HAS(e, "'h.1.attn.c_attn.weight_zero_point': zero point 100000 at index 0 is outside [-32768, 32768]");
}

TEST(CorruptQuantizedCheckpoint, Int8MissingZeroPoint) {
  const fs::path bad = corrupted(quantized_dir("int8-tensor"),
                                 [](Tensors& t) { t.erase("transformer.h.1.attn.c_attn.weight_zero_point"); });
  EXPECT_HAS(load_error(bad), "missing tensor 'h.1.attn.c_attn.weight_zero_point'");
}

TEST(CorruptQuantizedCheckpoint, StateOfAFormatThatIsNotTheConfigs) {
  const fs::path bad = corrupted(quantized_dir("llm-int8"), [](Tensors& t) {
    t["transformer.h.0.attn.c_attn.weight.absmax"] = Tensor::from_vector(std::vector<float>{1.0f}, {1});
  });
  EXPECT_HAS(load_error(bad), "'h.0.attn.c_attn.weight.absmax': is not part of this quantization format");
}

TEST(CorruptQuantizedCheckpoint, QuantizedWeightsWithoutQuantizationConfig) {
  const fs::path bad = corrupted(
      quantized_dir("nf4"), [](Tensors&) {}, [](json& c) { c.erase("quantization_config"); });
  const std::string e = error_of([&] { Checkpoint::load(bad); });
  EXPECT_HAS(e, "tensor 'h.0.attn.c_attn.weight' has dtype U8");
  EXPECT_HAS(e, "config.json has no quantization_config");
}

TEST(CorruptQuantizedCheckpoint, QuantStateOfAWeightThatIsNotQuantized) {
  const fs::path bad = corrupted(quantized_dir("nf4"), [](Tensors& t) {
    t["transformer.h.0.attn.c_attn.weight"] = Tensor::empty({128, 384}, DType::F32);
  });
  const std::string e = error_of([&] { Checkpoint::load(bad); });
  EXPECT_HAS(e, (bad / "model.safetensors").string());
  EXPECT_HAS(e, "is quantization state of 'h.0.attn.c_attn.weight', which is not stored quantized (F32)");
}

TEST(CorruptQuantizedCheckpoint, UncorruptedCopyLoads) {
  // The copying itself keeps a checkpoint valid: the errors above come from the edits.
  for (const char* m : {"nf4", "llm-int8", "int8-tensor"})
    EXPECT_EQ(load_error(corrupted(quantized_dir(m), [](Tensors&) {})), "") << m;
}

}  // namespace
