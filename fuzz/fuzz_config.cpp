// fuzz_config: GPT2Config::load on arbitrary bytes as config.json, plus its
// quantization_config block (QuantizationConfig::from_json, as
// Checkpoint::load reads it). A config that loads must also survive what
// `save` does with it: to_json, dump, and loading that back to the same JSON.
// Seeds: every config.json of tests/fixtures and the shared tiny models
// (fuzz.sh), and the generated ones below.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/config.h"
#include "quant/quant_config.h"
#include "support/fuzz_support.h"

using namespace gpt2q;
using gpt2q::fuzz::nested;
using gpt2q::fuzz::write_seed;
using nlohmann::json;

namespace {

const char* kBase = R"({"model_type":"gpt2","vocab_size":50,"n_positions":16,"n_embd":8,"n_layer":2,"n_head":2,)"
                    R"("n_inner":null,"activation_function":"gelu_new","layer_norm_epsilon":1e-05,)"
                    R"("architectures":["GPT2ForSequenceClassification"],"id2label":{"0":"a","1":"b"},)"
                    R"("label2id":{"a":0,"b":1},"eos_token_id":[0,1],"pad_token_id":0,"torch_dtype":"float16")";

std::string with(const std::string& extra) { return std::string(kBase) + "," + extra + "}"; }

void write_seeds(const std::filesystem::path& dir) {
  write_seed(dir, "gen-base", std::string(kBase) + "}");
  write_seed(dir, "gen-nf4-dq", with(R"("quantization_config":{"quant_method":"bitsandbytes","load_in_4bit":true,)"
                                     R"("bnb_4bit_quant_type":"nf4","bnb_4bit_use_double_quant":true,)"
                                     R"("bnb_4bit_compute_dtype":"bfloat16","llm_int8_skip_modules":["lm_head"]})"));
  write_seed(dir, "gen-llm-int8", with(R"("quantization_config":{"quant_method":"bitsandbytes","load_in_8bit":true,)"
                                       R"("llm_int8_threshold":6.0,"llm_int8_has_fp16_weight":false})"));
  write_seed(dir, "gen-int8-tensor", with(R"("quantization_config":{"quant_method":"gpt2q","method":"int8-tensor",)"
                                          R"("symmetric":false,"per_channel":true,"weight_layout":"out_in",)"
                                          R"("compute_dtype":"float32","modules_to_not_convert":[]})"));
  write_seed(dir, "gen-num-labels", R"({"num_labels":3,"n_embd":12,"n_head":3,"scale_attn_by_inverse_layer_idx":true})");

  // Hostile: deep nesting wherever the reader keeps or walks a value (an
  // unknown key is kept in `raw`), huge keys and label tables.
  constexpr size_t kDeep = 100'000;
  write_seed(dir, "hostile-deep-array", nested("[", "]", kDeep));
  write_seed(dir, "hostile-deep-unknown-key", with("\"x\":" + nested("[", "]", kDeep)));
  write_seed(dir, "hostile-deep-object", with("\"x\":" + nested("{\"a\":", "}", kDeep / 2, "1")));
  write_seed(dir, "hostile-deep-id2label", R"({"id2label":{"0":)" + nested("[", "]", kDeep) + "}}");
  write_seed(dir, "hostile-deep-architectures", R"({"architectures":)" + nested("[", "]", kDeep) + "}");
  write_seed(dir, "hostile-deep-eos-list", R"({"eos_token_id":)" + nested("[", "]", kDeep, "0") + "}");
  write_seed(dir, "hostile-deep-quantization-config",
             with("\"quantization_config\":{\"quant_method\":" + nested("[", "]", kDeep) + "}"));
  write_seed(dir, "hostile-huge-key", with("\"" + std::string(1'000'000, 'k') + "\":1"));
  write_seed(dir, "hostile-many-labels", R"({"num_labels":100000})");
  std::string labels = "{\"id2label\":{";
  for (int i = 0; i < 50000; ++i) labels += fmt::format("{}\"{}\":\"l{}\"", i ? "," : "", i, i);
  write_seed(dir, "hostile-big-id2label", labels + "}}");
  write_seed(dir, "hostile-big-numbers", R"({"vocab_size":9223372036854775807,"n_embd":18446744073709551615,)"
                                         R"("layer_norm_epsilon":1e308,"resid_pdrop":-0.0,"bos_token_id":-1})");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("config.json");
  const auto& path = file.set({reinterpret_cast<const char*>(data), size});
  GPT2Config config;
  if (!fuzz::expect_only_errors([&] { config = GPT2Config::load(path); })) return 0;
  (void)config.attention_scale(config.n_layer - 1);
  (void)config.head_dim();
  (void)config.inner();

  // What `save` writes must load back unchanged.
  json saved;
  std::string text;
  try {
    saved = config.to_json();
    text = saved.dump(2);
    GPT2Config again = GPT2Config::from_json(json::parse(text), "saved config.json");
    if (again.to_json() != saved) fuzz::finding("config.json changes when saved and loaded again");
  } catch (const Error& e) {
    fuzz::finding(std::string("a loaded config.json does not load again once saved: ") + e.what());
  }

  // Checkpoint::load hands the block on only when it is an object.
  if (config.raw.contains("quantization_config") && config.raw["quantization_config"].is_object())
    fuzz::expect_only_errors([&] {
      auto q = quant::QuantizationConfig::from_json(config.raw["quantization_config"], path.string());
      (void)q.to_json().dump();
      (void)q.describe();
      (void)q.compute();
    });
  return 0;
}
