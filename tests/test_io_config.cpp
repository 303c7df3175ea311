// config.json: reading transformers' files (4.x `torch_dtype`, 5.x `dtype`),
// defaults equal to transformers' GPT2Config, validation, and round trips.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/file_util.h"
#include "io/config.h"
#include "support/test_env.h"

using namespace gpt2q;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string config_error(const json& j) {
  try {
    GPT2Config::from_json(j, "dir/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, ReadsTransformers4File) {
  auto c = GPT2Config::load(test::data_dir() / "tiny-gpt2" / "fake_gpt2" / "config.json");
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_EQ(c.n_positions, 1024);
  EXPECT_EQ(c.n_embd, 2);
  EXPECT_EQ(c.n_layer, 1);
  EXPECT_EQ(c.n_head, 1);
  EXPECT_FALSE(c.n_inner.has_value());
  EXPECT_EQ(c.inner(), 8);
  EXPECT_EQ(c.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(c.dtype, "float32");  // from torch_dtype
  EXPECT_EQ(c.architectures, std::vector<std::string>{"GPT2LMHeadModel"});
  EXPECT_EQ(c.eos_token_id, 50256);
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_EQ(c.num_labels(), 0);
  EXPECT_EQ(c.raw["_name_or_path"], "fake-gpt2");
}

TEST(Config, ReadsTransformers5ClassifierFile) {
  auto c = GPT2Config::load(test::fixtures_dir() / "io" / "tiny_cls_f16" / "config.json");
  EXPECT_EQ(c.dtype, "float16");
  EXPECT_EQ(c.id2label, (std::vector<std::string>{"World", "Sports", "Business", "Sci/Tech"}));
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.head_dim(), 4);
}

// Defaults must be transformers' GPT2Config() defaults: an empty object reads
// as GPT-2 124M. (Values from GPT2Config's signature in transformers 5.)
TEST(Config, EmptyObjectGivesTransformersDefaults) {
  auto c = GPT2Config::from_json(json::object(), "x");
  GPT2Config d;
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_EQ(c.n_embd, 768);
  EXPECT_EQ(c.n_layer, 12);
  EXPECT_EQ(c.n_head, 12);
  EXPECT_EQ(c.inner(), 3072);
  EXPECT_EQ(c.bos_token_id, 50256);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.activation_function, "gelu_new");
}

TEST(Config, DtypeWinsOverTorchDtypeAndNullsAreAccepted) {
  auto c = GPT2Config::from_json({{"torch_dtype", "float32"}, {"dtype", "bfloat16"}, {"n_inner", nullptr},
                                  {"pad_token_id", nullptr}, {"eos_token_id", {7, 8}}},
                                 "x");
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.eos_token_id, 7);
  EXPECT_FALSE(c.pad_token_id.has_value());
}

TEST(Config, NumLabelsWithoutId2LabelGivesTransformersNames) {
  auto c = GPT2Config::from_json({{"num_labels", 3}}, "x");
  EXPECT_EQ(c.id2label, (std::vector<std::string>{"LABEL_0", "LABEL_1", "LABEL_2"}));
}

TEST(Config, BadValuesNameFileAndKey) {
  struct Case {
    json j;
    const char* expect;
  };
  std::vector<Case> cases = {
      {json::array(), "dir/config.json: not a JSON object"},
      {{{"n_embd", -4}}, "dir/config.json: key 'n_embd': must be a positive integer"},
      {{{"n_embd", "768"}}, "key 'n_embd'"},
      {{{"n_layer", 1.5}}, "key 'n_layer'"},
      {{{"n_inner", 0}}, "key 'n_inner'"},
      {{{"n_embd", 10}, {"n_head", 3}}, "key 'n_head': n_embd 10 is not divisible by n_head 3"},
      {{{"vocab_size", int64_t{1} << 40}}, "key 'vocab_size'"},
      {{{"layer_norm_epsilon", 0}}, "key 'layer_norm_epsilon'"},
      {{{"activation_function", "relu"}}, "key 'activation_function': \"relu\" is not supported"},
      {{{"activation_function", "gelu_pytorch_tanh"}}, "not supported"},
      {{{"pad_token_id", -1}}, "key 'pad_token_id'"},
      {{{"scale_attn_weights", "yes"}}, "key 'scale_attn_weights'"},
      {{{"architectures", "GPT2LMHeadModel"}}, "key 'architectures'"},
      {{{"model_type", "llama"}}, "key 'model_type'"},
      {{{"id2label", {{"0", "a"}, {"2", "b"}}}}, "key 'id2label': keys must be"},
      {{{"id2label", {{"00", "a"}}}}, "key 'id2label': keys must be"},
      {{{"id2label", {{"0", 1}}}}, "key 'id2label': label 0 must be a string"},
      {{{"id2label", {{"0", "a"}, {"1", "b"}, {"2", "a"}}}},
       "key 'id2label': label \"a\" is given twice (ids 0 and 2)"},
      {{{"id2label", {{"0", "a"}, {"1", "b"}}}, {"num_labels", 3}},
       "key 'num_labels' is 3 but id2label has 2 labels"},
      {{{"id2label", {{"0", "a"}, {"1", "b"}}}, {"label2id", {{"a", 1}, {"b", 0}}}},
       "key 'label2id' is not the inverse of id2label"},
      {{{"label2id", {{"a", 0}}}}, "key 'label2id' is given without id2label"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.j.dump());
    std::string err = config_error(c.j);
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
    EXPECT_NE(err.find("dir/config.json"), std::string::npos) << err;
  }
}

TEST(Config, LoadErrorsNameTheFile) {
  auto tmp = test::temp_dir("cfg_load");
  write_file_atomic(tmp / "config.json", "{\"n_embd\": 8,");
  try {
    GPT2Config::load(tmp / "config.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((tmp / "config.json").string() + ": invalid JSON"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(GPT2Config::load(tmp / "missing.json"), Error);
  fs::remove_all(tmp);
}

TEST(Config, SaveAndLoadRoundTripKeepsUnknownKeys) {
  auto tmp = test::temp_dir("cfg_rt");
  auto c = GPT2Config::load(test::data_dir() / "tiny-gpt2" / "fake_gpt2" / "config.json");
  c.id2label = {"neg", "pos"};
  c.pad_token_id = 50256;
  c.n_inner = 16;
  c.architectures = {"GPT2ForSequenceClassification"};
  c.dtype = "float16";
  c.save(tmp / "config.json");
  auto r = GPT2Config::load(tmp / "config.json");
  EXPECT_EQ(r.id2label, c.id2label);
  EXPECT_EQ(r.pad_token_id, 50256);
  EXPECT_EQ(r.n_inner, 16);
  EXPECT_EQ(r.architectures, c.architectures);
  EXPECT_EQ(r.dtype, "float16");
  EXPECT_EQ(r.raw["task_specific_params"]["text-generation"]["max_length"], 50);
  EXPECT_EQ(r.raw["label2id"]["pos"], 1);
  EXPECT_EQ(r.raw["torch_dtype"], "float16");  // kept in step for transformers 4.x
  EXPECT_EQ(r.raw["dtype"], "float16");
  EXPECT_EQ(r.to_json(), c.to_json());
  fs::remove_all(tmp);
}
