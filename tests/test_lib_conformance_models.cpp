// gpt2q's GPT-2 against transformers on every checkpoint in
// tests/fixtures/models (tools/make_fixtures.py): Checkpoint::load +
// GPT2Model::from_checkpoint must give transformers' hidden states and logits
// within 1e-4, the same argmax, the same greedy ids, the same classifier
// logits, and the same sliding-window perplexity (exact scored-token count).
// Every test runs on the CPU and, in a CUDA build with a GPU, on CUDA (fp32).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "eval/perplexity.h"
#include "io/checkpoint.h"
#include "model/gpt2.h"
#include "support/test_env.h"
#include "test_lib_conformance_fixture.h"
#include "text/tokenizer.h"

namespace gpt2q::conformance {
namespace {

const std::vector<std::string> kModels = {"tiny-lm",    "small-vocab-lm", "classifier", "hub-style-noprefix",
                                          "base-model", "trained-lm",     "fp16-lm",    "bf16-lm"};
// Those with an LM head (base-model: GPT2Model, used as an LM with the tied head).
const std::vector<std::string> kLmModels = {"tiny-lm",    "small-vocab-lm", "hub-style-noprefix", "base-model",
                                            "trained-lm", "fp16-lm",        "bf16-lm"};
const std::vector<std::string> kClassifiers = {"classifier"};
// Real GPT-2 vocabulary: inputs came from text through transformers' tokenizer.
const std::vector<std::string> kTextModels = {"tiny-lm", "trained-lm"};

struct Loaded {
  Reference ref;
  Checkpoint ckpt;
  std::unique_ptr<GPT2Model> model;
};

// Each fixture is loaded once per process and device.
Loaded& loaded(const std::string& name, Device device) {
  static std::map<std::pair<std::string, Device>, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[{name, device}];
  if (!slot) {
    auto l = std::make_unique<Loaded>();
    l->ref = Reference::load(name);
    l->ckpt = Checkpoint::load(models_dir() / l->ref.info.at("dir").get<std::string>());
    l->model = GPT2Model::from_checkpoint(l->ckpt, Placement{device, DType::F32});
    slot = std::move(l);
  }
  return *slot;
}

Tensor host(const Tensor& t) { return to_device(t, Device::CPU); }

std::string head_of(const Reference& ref) { return ref.info.at("head").get<std::string>(); }

using Param = std::tuple<std::string, Device>;

class Conformance : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { GPT2Q_SKIP_WITHOUT_DEVICE(device()); }
  Loaded& fx() { return loaded(name(), device()); }
  const std::string& name() const { return std::get<0>(GetParam()); }
  Device device() const { return std::get<1>(GetParam()); }
};
class LmConformance : public Conformance {};
class ClassifierConformance : public Conformance {};
class TextConformance : public Conformance {};

TEST_P(Conformance, CheckpointLayoutIsRecognised) {
  auto& f = fx();
  const auto& info = f.ref.info;
  const auto& cfg = f.ckpt.config;
  EXPECT_EQ(cfg.vocab_size, info.at("vocab_size").get<int64_t>());
  EXPECT_EQ(cfg.n_positions, info.at("n_positions").get<int64_t>());
  const std::string head = head_of(f.ref);
  const ModelKind want = head == "cls" ? ModelKind::SequenceClassification
                         : head == "base" ? ModelKind::Base
                                          : ModelKind::CausalLM;
  EXPECT_EQ(f.ckpt.kind, want);
  EXPECT_EQ(f.model->kind(), want);
  // save_pretrained prefixes LM and classifier names; GPT2Model and the hub's
  // plain gpt2 file do not.
  const bool prefixed = info.at("layout") == "transformers" && head != "base";
  EXPECT_EQ(f.ckpt.had_transformer_prefix, prefixed);
  const std::string dtype = info.at("stored_dtype");
  const DType stored = dtype == "float16" ? DType::F16 : dtype == "bfloat16" ? DType::BF16 : DType::F32;
  EXPECT_EQ(f.ckpt.get("h.0.attn.c_attn.weight").dtype(), stored);
  EXPECT_EQ(f.ckpt.get("wte.weight").dtype(), stored);
  if (head == "cls") {
    EXPECT_EQ(f.model->num_labels(), 4);
    EXPECT_EQ(cfg.id2label, info.at("labels").get<std::vector<std::string>>());
    EXPECT_EQ(cfg.pad_token_id, info.at("pad_id").get<int64_t>());
  }
  if (name() == "small-vocab-lm") {
    ASSERT_TRUE(cfg.n_inner.has_value());
    EXPECT_EQ(cfg.inner(), 72);
  }
}

TEST_P(Conformance, HiddenStatesMatchTransformers) {
  auto& f = fx();
  const Tensor hidden = host(f.model->hidden_states(f.ref.batch()));
  EXPECT_LE(max_hidden_diff(f.ref, hidden), kLogitTol) << name();
}

TEST_P(LmConformance, LmLogitsMatchTransformers) {
  auto& f = fx();
  const Tensor logits = host(f.model->lm_logits(f.ref.batch()));
  ASSERT_EQ(logits.ndim(), 3);
  ASSERT_EQ(logits.dim(2), f.ref.info.at("vocab_size").get<int64_t>());
  expect_logits_match(f.ref, "", rows_of(logits));
}

TEST_P(LmConformance, LmLogitsFromHiddenRowsMatchTransformers) {
  auto& f = fx();
  const TokenBatch batch = f.ref.batch();
  Tensor hidden = f.model->hidden_states(batch);
  const int64_t C = hidden.dim(2);
  Tensor rows = hidden.view({batch.batch * batch.seq, C});
  const Tensor logits = host(f.model->lm_logits_from_hidden(rows));
  ASSERT_EQ(logits.ndim(), 2);
  expect_logits_match(f.ref, "", rows_of(logits.view({batch.batch, batch.seq, logits.dim(1)})));
}

TEST_P(ClassifierConformance, ClassifierLogitsMatchTransformers) {
  auto& f = fx();
  const Tensor logits = host(f.model->class_logits(f.ref.batch()));
  const auto want = f.ref.f32("class_logits");
  const auto pred = f.ref.info.at("class_pred").get<std::vector<int64_t>>();
  const int64_t B = f.ref.dim("class_logits", 0), L = f.ref.dim("class_logits", 1);
  ASSERT_EQ(logits.shape(), (Shape{B, L}));
  const float* got = logits.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(got[b * L + l], want[b * L + l], kLogitTol) << "row " << b;
    EXPECT_EQ(std::max_element(got + b * L, got + (b + 1) * L) - (got + b * L), pred[b]) << "row " << b;
  }
}

TEST_P(LmConformance, GreedyGenerationMatchesTransformers) {
  auto& f = fx();
  const auto& gens = f.ref.info.at("generate");
  ASSERT_FALSE(gens.empty());
  for (const auto& g : gens) {
    GenerateOptions opts;
    opts.max_new_tokens = g.at("max_new_tokens").get<int64_t>();
    opts.greedy = true;
    opts.stop_at_eos = false;  // transformers ran with eos_token_id=None
    const auto ids = generate(*f.model, to_ids(g.at("prompt_ids")), opts);
    EXPECT_EQ(ids, to_ids(g.at("ids"))) << name() << " prompt " << g.at("prompt_ids").dump()
                                        << " (smallest top-2 gap " << g.at("min_gap").get<double>() << ")";
  }
}

TEST_P(LmConformance, SlidingWindowPerplexityMatchesTransformers) {
  auto& f = fx();
  ASSERT_TRUE(f.ref.info.contains("perplexity"));
  const auto ids = f.ref.ids32("ppl_ids");
  ASSERT_EQ(static_cast<int64_t>(ids.size()), f.ref.info["perplexity"].at("n_ids").get<int64_t>());
  for (const auto& run : f.ref.info["perplexity"].at("runs")) {
    PerplexityOptions opts;
    opts.max_length = run.at("max_length");
    opts.stride = run.at("stride");
    opts.progress = false;
    const auto r = evaluate_perplexity(*f.model, ids, opts);
    const std::string what = name() + " max_length " + std::to_string(opts.max_length) + " stride " +
                             std::to_string(opts.stride);
    EXPECT_EQ(r.tokens, run.at("tokens").get<int64_t>()) << what;
    EXPECT_EQ(r.windows, run.at("windows").get<int64_t>()) << what;
    EXPECT_LE(rel_diff(r.nll, run.at("nll").get<double>()), kPplRelTol) << what << ": nll " << r.nll;
    EXPECT_LE(rel_diff(r.ppl, run.at("ppl").get<double>()), kPplRelTol) << what << ": ppl " << r.ppl;
    // The window schedule accounts for exactly the scored tokens.
    int64_t scored = 0;
    for (const auto& w : perplexity_windows(static_cast<int64_t>(ids.size()), opts.max_length, opts.stride))
      scored += w.scored();
    EXPECT_EQ(scored, run.at("tokens").get<int64_t>()) << what;
  }
}

// The real-vocabulary fixtures' token ids came from transformers' GPT-2
// tokenizer; gpt2q's tokenizer must produce the same ids from the same text.
TEST_P(TextConformance, TokenizerReproducesFixtureIds) {
  auto& f = fx();
  const auto& info = f.ref.info;
  Tokenizer tok = Tokenizer::load(test::data_dir() / "gpt2-tokenizer");
  const auto lengths = f.ref.i64("lengths");
  const auto input_ids = f.ref.i64("input_ids");
  const int64_t T = f.ref.dim("input_ids", 1);
  const auto texts = info.at("texts").get<std::vector<std::string>>();
  ASSERT_EQ(texts.size(), lengths.size());
  for (size_t b = 0; b < texts.size(); ++b) {
    std::vector<int32_t> want(input_ids.begin() + b * T, input_ids.begin() + b * T + lengths[b]);
    EXPECT_EQ(tok.encode(texts[b]), want) << texts[b];
  }
  for (const auto& g : info.at("generate")) {
    EXPECT_EQ(tok.encode(g.at("prompt_text").get<std::string>()), to_ids(g.at("prompt_ids")));
    // transformers' decode without space clean-up.
    EXPECT_EQ(tok.decode(to_ids(g.at("ids"))), g.at("text").get<std::string>());
  }
  const auto& src = info.at("perplexity").at("source");
  std::ifstream in(test::data_dir() / src.at("file").get<std::string>(), std::ios::binary);
  ASSERT_TRUE(in) << src.dump();
  std::string text(src.at("length").get<size_t>(), '\0');
  in.seekg(src.at("offset").get<std::streamoff>());
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  ASSERT_TRUE(in) << src.dump();
  EXPECT_EQ(tok.encode(text), f.ref.ids32("ppl_ids"));
}

std::string test_name(const ::testing::TestParamInfo<Param>& info) {
  std::string n = std::get<0>(info.param) + "_" + device_tag(std::get<1>(info.param));
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}
INSTANTIATE_TEST_SUITE_P(Fixtures, Conformance,
                         ::testing::Combine(::testing::ValuesIn(kModels), ::testing::ValuesIn(test_devices())),
                         test_name);
INSTANTIATE_TEST_SUITE_P(Fixtures, LmConformance,
                         ::testing::Combine(::testing::ValuesIn(kLmModels), ::testing::ValuesIn(test_devices())),
                         test_name);
INSTANTIATE_TEST_SUITE_P(Fixtures, ClassifierConformance,
                         ::testing::Combine(::testing::ValuesIn(kClassifiers), ::testing::ValuesIn(test_devices())),
                         test_name);
// The tokenizer has no device: the CPU instance only.
INSTANTIATE_TEST_SUITE_P(Fixtures, TextConformance,
                         ::testing::Combine(::testing::ValuesIn(kTextModels), ::testing::Values(Device::CPU)),
                         test_name);

// The lists above cover every fixture the script wrote (meta.json), each by
// what it holds.
TEST(ConformanceFixtures, EveryGeneratedModelIsTested) {
  std::ifstream in(models_dir() / "meta.json");
  ASSERT_TRUE(in);
  const auto meta = nlohmann::json::parse(in);
  for (const auto& [name, purpose] : meta.at("models").items()) {
    if (name == "synthetic-124m") continue;  // test_lib_conformance_124m
    EXPECT_TRUE(std::find(kModels.begin(), kModels.end(), name) != kModels.end()) << name;
  }
  EXPECT_EQ(meta.at("models").size(), kModels.size() + 1);
  auto listed = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  for (const auto& name : kModels) {
    const Reference ref = Reference::load(name);
    EXPECT_EQ(listed(kLmModels, name), ref.has("topk_ids")) << name;
    EXPECT_EQ(listed(kClassifiers, name), ref.has("class_logits")) << name;
    EXPECT_EQ(listed(kTextModels, name), ref.info.contains("texts")) << name;
  }
}

}  // namespace
}  // namespace gpt2q::conformance
