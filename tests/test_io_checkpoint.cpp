// Checkpoint directories: the shared tiny checkpoints, transformers-written
// fixtures (fp16 classifier, bf16 sharded LM), shards and broken checkpoints
// built here, and save_checkpoint round trips.
#include <gtest/gtest.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "io/checkpoint.h"
#include "support/test_env.h"

using namespace gpt2q;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using gpt2q::test::fake_gpt2_dir;

fs::path tiny_gpt2() { return test::data_dir() / "tiny-gpt2" / "tiny_gpt2"; }

GPT2Config small_config() {
  GPT2Config c;
  c.vocab_size = 50;
  c.n_positions = 16;
  c.n_embd = 8;
  c.n_layer = 2;
  c.n_head = 2;
  return c;
}

// Every tensor the config needs, filled with distinct values.
std::vector<std::pair<std::string, Tensor>> make_tensors(const GPT2Config& c, ModelKind kind) {
  std::vector<std::pair<std::string, Tensor>> v;
  float x = 0.f;
  for (const auto& s : expected_tensors(c, kind)) {
    Tensor t = Tensor::empty(s.shape, DType::F32);
    for (auto& e : t.span<float>()) e = (x += 0.001f);
    v.emplace_back(s.name, t);
  }
  return v;
}

std::string load_error(const fs::path& dir) {
  try {
    Checkpoint::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A valid small checkpoint dir, then `edit` changes the config JSON and the
// stored (on-disk) tensors before they are written.
fs::path make_checkpoint(const std::string& tag, const std::function<void(json&)>& edit_config,
                         const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit_tensors) {
  auto dir = test::temp_dir(tag);
  auto cfg = small_config();
  save_checkpoint(dir, cfg, ModelKind::CausalLM, make_tensors(cfg, ModelKind::CausalLM));
  json j = json::parse(read_file(dir / "config.json"));
  edit_config(j);
  write_file_atomic(dir / "config.json", j.dump(2));
  auto st = SafetensorsFile::open(dir / "model.safetensors");
  std::vector<std::pair<std::string, Tensor>> stored;
  for (const auto& [name, t] : st.tensors) stored.emplace_back(name, t.clone());
  edit_tensors(stored);
  write_safetensors(dir / "model.safetensors", stored);
  return dir;
}

void no_config_edit(json&) {}
void no_tensor_edit(std::vector<std::pair<std::string, Tensor>>&) {}

}  // namespace

TEST(Checkpoint, LoadsFakeGpt2WithPrefixAndTiedHead) {
  auto ck = Checkpoint::load(fake_gpt2_dir());
  EXPECT_EQ(ck.kind, ModelKind::CausalLM);
  EXPECT_TRUE(ck.had_transformer_prefix);
  EXPECT_EQ(ck.tensors.size(), 16u);
  EXPECT_FALSE(ck.has("lm_head.weight"));
  EXPECT_EQ(ck.get("wte.weight").shape(), (Shape{50257, 2}));
  EXPECT_EQ(ck.stored_bytes(), 102640u * 4);  // MANIFEST: 102,640 parameters, F32
  EXPECT_EQ(ck.source.at("wte.weight"), (fake_gpt2_dir() / "model.safetensors").string());
  Tensor f = ck.get_f32("h.0.attn.c_attn.weight");
  EXPECT_EQ(f.raw(), ck.get("h.0.attn.c_attn.weight").raw()) << "F32 must stay a view";
  EXPECT_THROW(ck.get("lm_head.weight"), Error);
}

TEST(Checkpoint, LoadsTinyGpt2BaseModelWithoutPrefix) {
  auto ck = Checkpoint::load(tiny_gpt2());
  EXPECT_EQ(ck.kind, ModelKind::Base);
  EXPECT_FALSE(ck.had_transformer_prefix);
  EXPECT_EQ(ck.config.vocab_size, 21);
  EXPECT_EQ(ck.get("wte.weight").shape(), (Shape{21, 2}));
  size_t params = 0;
  for (const auto& [n, t] : ck.tensors) params += t.numel();
  EXPECT_EQ(params, 2168u);  // MANIFEST
}

// fp16 classifier saved by transformers 5; fp32 values as torch converts them.
TEST(Checkpoint, LoadsTransformersF16ClassifierAndConvertsLikeTorch) {
  const fs::path dir = test::fixtures_dir() / "io";
  auto ck = Checkpoint::load(dir / "tiny_cls_f16");
  EXPECT_EQ(ck.kind, ModelKind::SequenceClassification);
  EXPECT_EQ(ck.config.num_labels(), 4);
  EXPECT_EQ(ck.get("score.weight").dtype(), DType::F16);
  auto expected = SafetensorsFile::open(dir / "tiny_cls_f16.expected_f32.safetensors");
  ASSERT_EQ(expected.tensors.size(), 2u);
  for (const auto& [stored, want] : expected.tensors) {
    std::string name = stored.rfind("transformer.", 0) == 0 ? stored.substr(12) : stored;
    Tensor got = ck.get_f32(name);
    EXPECT_EQ(got.dtype(), DType::F32);
    EXPECT_TRUE(same_bytes(got, want)) << name;
  }
  size_t want = 0;
  for (const auto& s : expected_tensors(ck.config, ck.kind)) want += static_cast<size_t>(shape_numel(s.shape)) * 2;
  EXPECT_EQ(ck.stored_bytes(), want);
}

TEST(Checkpoint, LoadsTransformersShardedBf16Checkpoint) {
  auto ck = Checkpoint::load(test::fixtures_dir() / "io" / "tiny_lm_bf16_sharded");
  EXPECT_EQ(ck.kind, ModelKind::CausalLM);
  EXPECT_EQ(ck.files.size(), 3u);
  EXPECT_EQ(ck.tensors.size(), expected_tensors(ck.config, ck.kind).size());
  const Tensor& w = ck.get("h.1.mlp.c_proj.weight");
  ASSERT_EQ(w.dtype(), DType::BF16);
  Tensor f = ck.get_f32("h.1.mlp.c_proj.weight");
  for (int64_t i = 0; i < w.numel(); ++i) {
    uint32_t bits = static_cast<uint32_t>(w.data<uint16_t>()[i]) << 16;  // bf16 is fp32's top half
    float want;
    std::memcpy(&want, &bits, 4);
    ASSERT_EQ(f.data<float>()[i], want) << i;
  }
}

TEST(Checkpoint, ShardsWrittenHereLoadLikeTheSingleFile) {
  auto single = Checkpoint::load(fake_gpt2_dir());
  auto dir = test::temp_dir("ck_shards");
  fs::copy_file(fake_gpt2_dir() / "config.json", dir / "config.json");
  std::vector<std::pair<std::string, Tensor>> a, b;
  json map = json::object();
  int i = 0;
  for (const auto& [name, t] : single.tensors) {
    bool first = i++ % 2 == 0;
    (first ? a : b).emplace_back("transformer." + name, t);
    map["transformer." + name] = first ? "part-1.safetensors" : "part-2.safetensors";
  }
  write_safetensors(dir / "part-1.safetensors", a);
  write_safetensors(dir / "part-2.safetensors", b);
  auto write_index = [&](const json& m) {
    write_file_atomic(dir / "model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", m}}.dump());
  };
  write_index(map);
  auto ck = Checkpoint::load(dir);
  EXPECT_EQ(ck.files.size(), 2u);
  ASSERT_EQ(ck.tensors.size(), single.tensors.size());
  for (const auto& [name, t] : single.tensors) EXPECT_TRUE(same_bytes(ck.get(name), t)) << name;

  const std::string index = (dir / "model.safetensors.index.json").string();
  json bad = map;
  bad["transformer.h.0.ln_1.weight"] = map["transformer.h.0.ln_1.weight"] == "part-1.safetensors"
                                           ? "part-2.safetensors"
                                           : "part-1.safetensors";
  write_index(bad);
  std::string err = load_error(dir);
  EXPECT_NE(err.find(index + ": tensor 'transformer.h.0.ln_1.weight' is mapped to"), std::string::npos) << err;

  bad = map;
  bad.erase("transformer.wpe.weight");
  write_index(bad);
  err = load_error(dir);
  EXPECT_NE(err.find("tensor 'transformer.wpe.weight' is not mapped to this file"), std::string::npos) << err;

  bad = map;
  bad["transformer.wpe.weight"] = "../part-1.safetensors";
  write_index(bad);
  EXPECT_NE(load_error(dir).find("must be a file name in the checkpoint directory"), std::string::npos);

  bad = map;
  bad["transformer.wpe.weight"] = "part-3.safetensors";
  write_index(bad);
  EXPECT_NE(load_error(dir).find("part-3.safetensors: cannot open"), std::string::npos);

  write_file_atomic(dir / "model.safetensors.index.json", "[]");
  EXPECT_NE(load_error(dir).find(index + ": no 'weight_map' object"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Checkpoint, BrokenCheckpointsGiveOneLineErrors) {
  struct Case {
    const char* tag;
    std::function<void(json&)> cfg;
    std::function<void(std::vector<std::pair<std::string, Tensor>>&)> tensors;
    std::string expect;
  };
  auto drop = [](const std::string& name) {
    return [name](std::vector<std::pair<std::string, Tensor>>& v) {
      std::erase_if(v, [&](const auto& p) { return p.first == name; });
    };
  };
  auto add = [](const std::string& name, Tensor t) {
    return [name, t](std::vector<std::pair<std::string, Tensor>>& v) { v.emplace_back(name, t); };
  };
  std::vector<Case> cases = {
      {"missing", no_config_edit, drop("transformer.h.1.mlp.c_fc.bias"),
       "model.safetensors: missing tensor 'h.1.mlp.c_fc.bias' (config.json: n_layer 2)"},
      {"embd", [](json& j) { j["n_embd"] = 16; }, no_tensor_edit,
       "model.safetensors: tensor 'wte.weight' has shape [50, 8] but config.json implies [vocab_size, n_embd] = "
       "[50, 16]"},
      {"vocab", [](json& j) { j["vocab_size"] = 51; }, no_tensor_edit, "tensor 'wte.weight' has shape [50, 8]"},
      {"inner", [](json& j) { j["n_inner"] = 64; }, no_tensor_edit,
       "tensor 'h.0.mlp.c_fc.weight' has shape [8, 32] but config.json implies [n_embd, n_inner] = [8, 64]"},
      {"fewer_layers", [](json& j) { j["n_layer"] = 1; }, no_tensor_edit,
       "unexpected tensor 'h.1.attn.c_attn.bias' (config.json: n_layer 1)"},
      {"more_layers", [](json& j) { j["n_layer"] = 3; }, no_tensor_edit,
       "missing tensor 'h.2.ln_1.weight' (config.json: n_layer 3)"},
      {"int_dtype", no_config_edit, [](auto& v) {
         for (auto& [n, t] : v)
           if (n == "transformer.ln_f.bias") t = Tensor::empty({8}, DType::I32);
       },
       "tensor 'ln_f.bias' has dtype I32; GPT-2 weights must be F32, F16 or BF16"},
      {"stray", no_config_edit, add("transformer.h.0.attn.extra", Tensor::empty({2}, DType::F32)),
       "unexpected tensor 'h.0.attn.extra' for a GPT2LMHeadModel"},
      {"score_on_lm", no_config_edit, add("score.weight", Tensor::empty({2, 8}, DType::F32)),
       "unexpected tensor 'score.weight' for a GPT2LMHeadModel"},
      {"lm_head_shape", no_config_edit, add("lm_head.weight", Tensor::empty({8, 50}, DType::F32)),
       "tensor 'lm_head.weight' has shape [8, 50] but config.json implies [vocab_size, n_embd] = [50, 8]"},
      {"duplicate", no_config_edit, add("wpe.weight", Tensor::empty({16, 8}, DType::F32)),
       "tensor 'wpe.weight' appears twice"},
      {"untied", [](json& j) { j["tie_word_embeddings"] = false; }, no_tensor_edit,
       "missing tensor 'lm_head.weight' (config.json: tie_word_embeddings is false)"},
      {"arch", [](json& j) { j["architectures"] = {"GPT2DoubleHeadsModel"}; }, no_tensor_edit,
       "config.json: key 'architectures': \"GPT2DoubleHeadsModel\" is not supported"},
      {"classifier_without_score", [](json& j) { j["architectures"] = {"GPT2ForSequenceClassification"}; },
       no_tensor_edit, "missing tensor 'score.weight'"},
      {"classifier_default_labels", [](json& j) { j["architectures"] = {"GPT2ForSequenceClassification"}; },
       add("score.weight", Tensor::empty({3, 8}, DType::F32)),
       "tensor 'score.weight' has shape [3, 8] but config.json implies [num_labels, n_embd] = [2, 8]"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.tag);
    auto dir = make_checkpoint(std::string("ck_") + c.tag, c.cfg, c.tensors);
    std::string err = load_error(dir);
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
    EXPECT_NE(err.find(dir.string()), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    fs::remove_all(dir);
  }
}

TEST(Checkpoint, DirectoryProblems) {
  auto dir = test::temp_dir("ck_dirs");
  EXPECT_NE(load_error(dir / "nope").find("nope: no such directory"), std::string::npos);
  write_file_atomic(dir / "file", "x");
  EXPECT_NE(load_error(dir / "file").find("file: not a directory"), std::string::npos);
  EXPECT_NE(load_error(dir).find("config.json: no such file"), std::string::npos);
  fs::copy_file(fake_gpt2_dir() / "config.json", dir / "config.json");
  EXPECT_NE(load_error(dir).find(dir.string() + ": no model.safetensors or model.safetensors.index.json"),
            std::string::npos);
  fs::remove_all(dir);
}

// Old transformers saved the causal-mask buffers; they are not weights.
TEST(Checkpoint, IgnoresAttentionMaskBuffers) {
  auto dir = make_checkpoint(
      "ck_buffers", no_config_edit, [](std::vector<std::pair<std::string, Tensor>>& v) {
        v.emplace_back("transformer.h.0.attn.bias", Tensor::empty({1, 1, 16, 16}, DType::U8));
        v.emplace_back("transformer.h.1.attn.masked_bias", Tensor::empty({}, DType::F32));
      });
  auto ck = Checkpoint::load(dir);
  EXPECT_FALSE(ck.has("h.0.attn.bias"));
  EXPECT_FALSE(ck.has("h.1.attn.masked_bias"));
  EXPECT_EQ(ck.tensors.size(), expected_tensors(ck.config, ck.kind).size());
  fs::remove_all(dir);
}

TEST(Checkpoint, SaveWritesTransformersLayoutAndRoundTrips) {
  auto cfg = small_config();
  cfg.id2label = {"a", "b", "c"};
  for (ModelKind kind : {ModelKind::Base, ModelKind::CausalLM, ModelKind::SequenceClassification}) {
    SCOPED_TRACE(std::string(model_kind_name(kind)));
    auto dir = test::temp_dir("ck_save") / "out";  // save creates it
    auto tensors = make_tensors(cfg, kind);
    if (kind == ModelKind::CausalLM) tensors.emplace_back("lm_head.weight", tensors[0].second.clone());
    save_checkpoint(dir, cfg, kind, tensors);

    auto raw = SafetensorsFile::open(dir / "model.safetensors");
    EXPECT_EQ(raw.metadata.at("format"), "pt");
    const bool prefixed = kind != ModelKind::Base;
    EXPECT_EQ(raw.tensors.count("transformer.wte.weight"), prefixed ? 1u : 0u);
    EXPECT_EQ(raw.tensors.count("wte.weight"), prefixed ? 0u : 1u);
    EXPECT_EQ(raw.tensors.count("score.weight"), kind == ModelKind::SequenceClassification ? 1u : 0u);
    EXPECT_EQ(raw.tensors.count("lm_head.weight"), kind == ModelKind::CausalLM ? 1u : 0u);

    auto ck = Checkpoint::load(dir);
    EXPECT_EQ(ck.kind, kind);
    EXPECT_EQ(ck.config.architectures, std::vector<std::string>{std::string(architecture_name(kind))});
    EXPECT_EQ(ck.config.dtype, "float32");
    ASSERT_EQ(ck.tensors.size(), tensors.size());
    for (const auto& [name, t] : tensors) EXPECT_TRUE(same_bytes(ck.get(name), t)) << name;
    fs::remove_all(dir.parent_path());
  }
}

TEST(Checkpoint, SaveChecksTensorsBeforeWriting) {
  auto cfg = small_config();
  auto dir = test::temp_dir("ck_save_bad") / "out";
  auto tensors = make_tensors(cfg, ModelKind::CausalLM);
  tensors.pop_back();
  EXPECT_THROW(save_checkpoint(dir, cfg, ModelKind::CausalLM, tensors), Error);
  EXPECT_FALSE(fs::exists(dir));
  fs::remove_all(dir.parent_path());
}

// Parameter counts for GPT-2 124M from shapes alone, against transformers'
// own count (tools/make_io_fixtures.py builds the model on the meta device).
TEST(Checkpoint, ExpectedTensorsMatchTransformersParameterCounts) {
  json ref = json::parse(read_file(test::fixtures_dir() / "io" / "gpt2_param_counts.json"));
  GPT2Config cfg;  // transformers' defaults: GPT-2 124M
  for (auto [key, kind] : {std::pair{"GPT2LMHeadModel", ModelKind::CausalLM},
                           std::pair{"GPT2ForSequenceClassification4", ModelKind::SequenceClassification}}) {
    SCOPED_TRACE(key);
    cfg.id2label = kind == ModelKind::SequenceClassification ? std::vector<std::string>(4, "x")
                                                             : std::vector<std::string>{};
    std::map<std::string, int64_t> by_component;
    int64_t total = 0;
    for (const auto& s : expected_tensors(cfg, kind)) {
      EXPECT_EQ(tensor_component(s.name), s.component) << s.name;
      by_component[s.component] += shape_numel(s.shape);
      total += shape_numel(s.shape);
    }
    EXPECT_EQ(total, ref[key]["total"].get<int64_t>());
    EXPECT_EQ(by_component, (ref[key]["by_component"].get<std::map<std::string, int64_t>>()));
  }
  EXPECT_EQ(tensor_component("lm_head.weight"), "lm_head");
  EXPECT_EQ(tensor_component("h.3.ln_2.bias"), "ln");
  EXPECT_EQ(tensor_component("h.x.ln_2.bias"), "");
  EXPECT_EQ(tensor_component("foo"), "");
}

TEST(Checkpoint, ToF32RejectsNonFloat) {
  EXPECT_THROW(to_f32(Tensor::empty({2}, DType::I8)), Error);
  Tensor f = Tensor::from_vector<float>({1.f}, {1});
  EXPECT_EQ(to_f32(f).raw(), f.raw());
}
