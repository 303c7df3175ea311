// The GPT-2 124M geometry (GPT2Config() defaults) against transformers,
// without committing 500 MB of weights: both sides build gpt2q's synthetic
// weights from seed 1234 (tools/synthetic_weights.py reproduces
// src/model/synthetic_weights.h in numpy), and the fixture holds
// transformers' outputs for them (synthetic-124m.ref.*).
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <map>
#include <memory>

#include "eval/perplexity.h"
#include "io/checkpoint.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "test_lib_conformance_fixture.h"

namespace gpt2q::conformance {
namespace {

constexpr uint64_t kSeed = 1234;

const Reference& ref() {
  static const Reference r = Reference::load("synthetic-124m");
  return r;
}

GPT2Config classifier_config() {
  GPT2Config c;
  c.id2label = ref().info.at("labels").get<std::vector<std::string>>();
  c.pad_token_id = ref().info.at("pad_id").get<int64_t>();
  c.architectures = {"GPT2ForSequenceClassification"};
  return c;
}

struct Synthetic {
  Checkpoint ckpt;
  std::unique_ptr<GPT2Model> model;
  Synthetic(ModelKind kind, Device device)
      : ckpt(make_synthetic_checkpoint(kind == ModelKind::SequenceClassification ? classifier_config() : GPT2Config{},
                                       kind, kSeed)),
        model(GPT2Model::from_checkpoint(ckpt, Placement{device, DType::F32})) {}
};

// The LM, once per device (500 MB of weights each).
const Synthetic& lm(Device device) {
  static std::map<Device, std::unique_ptr<Synthetic>> cache;
  auto& s = cache[device];
  if (!s) s = std::make_unique<Synthetic>(ModelKind::CausalLM, device);
  return *s;
}

Tensor host(const Tensor& t) { return to_device(t, Device::CPU); }

// The model tests run on the CPU and, where a GPU is, on CUDA (fp32).
class Synthetic124MOn : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { GPT2Q_SKIP_WITHOUT_DEVICE(GetParam()); }
  const Synthetic& lm() const { return ::gpt2q::conformance::lm(GetParam()); }
};

TEST(Synthetic124M, WeightsAreBitExactWithTheNumpyReproduction) {
  const auto names = ref().info.at("sample_names").get<std::vector<std::string>>();
  const auto index = ref().i64("sample_index");
  const auto values = ref().f32("sample_values");
  const size_t per_name = index.size() / names.size();
  ASSERT_EQ(per_name * names.size(), index.size());
  Checkpoint cls = make_synthetic_checkpoint(classifier_config(), ModelKind::SequenceClassification, kSeed);
  for (size_t n = 0; n < names.size(); ++n) {
    const Tensor& t = cls.get(names[n]);
    int mismatches = 0;
    for (size_t j = 0; j < per_name; ++j) {
      const size_t k = n * per_name + j;
      const uint32_t want = std::bit_cast<uint32_t>(values[k]);
      const uint32_t direct = std::bit_cast<uint32_t>(synthetic_value(names[n], kSeed, index[k]));
      const uint32_t stored = std::bit_cast<uint32_t>(t.data<float>()[index[k]]);
      if (direct != want || stored != want) ++mismatches;
    }
    EXPECT_EQ(mismatches, 0) << names[n] << ": " << mismatches << " of " << per_name
                             << " values differ from numpy's fp32 arithmetic";
  }
}

TEST(Synthetic124M, HasTheGpt2SmallParameterCount) {
  int64_t total = 0;
  for (const auto& [name, t] : lm(Device::CPU).ckpt.tensors) total += t.numel();
  EXPECT_EQ(total, 124439808);  // REFERENCE.md: GPT-2 124M
}

TEST_P(Synthetic124MOn, PaddedBatchLogitsMatchTransformers) {
  const Tensor logits = host(lm().model->lm_logits(ref().batch()));
  ASSERT_EQ(logits.dim(2), 50257);
  expect_logits_match(ref(), "", rows_of(logits));
}

TEST_P(Synthetic124MOn, AllThousandTwentyFourPositionsMatchTransformers) {
  const auto long_ids = ref().ids32("long_ids");
  ASSERT_EQ(long_ids.size(), 1024u);
  const TokenBatch batch = TokenBatch::from_sequences({long_ids}, 50256);
  const Tensor hidden = host(lm().model->hidden_states(batch));
  const int64_t C = hidden.dim(2);
  // Only the stored positions go through the 50257-wide head.
  const auto pos = ref().i64("long_pos");
  Tensor rows = Tensor::empty({static_cast<int64_t>(pos.size() / 2), C}, DType::F32);
  for (size_t p = 0; p < pos.size() / 2; ++p)
    std::memcpy(rows.data<float>() + p * C, hidden.data<float>() + pos[2 * p + 1] * C, C * sizeof(float));
  const Tensor logits = host(lm().model->lm_logits_from_hidden(rows));
  const int64_t V = logits.dim(1);
  expect_logits_match(ref(), "long_", [&](int64_t, int64_t t) {
    for (size_t p = 0; p < pos.size() / 2; ++p)
      if (pos[2 * p + 1] == t) return std::span<const float>(logits.data<float>() + p * V, static_cast<size_t>(V));
    return std::span<const float>();
  });
}

TEST_P(Synthetic124MOn, ClassifierLogitsMatchTransformers) {
  Synthetic cls(ModelKind::SequenceClassification, GetParam());
  const Tensor logits = host(cls.model->class_logits(ref().batch()));
  const auto want = ref().f32("class_logits");
  const auto pred = ref().info.at("class_pred").get<std::vector<int64_t>>();
  const int64_t B = ref().dim("class_logits", 0), L = ref().dim("class_logits", 1);
  ASSERT_EQ(logits.shape(), (Shape{B, L}));
  const float* got = logits.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(got[b * L + l], want[b * L + l], kLogitTol) << "row " << b;
    EXPECT_EQ(std::max_element(got + b * L, got + (b + 1) * L) - (got + b * L), pred[b]) << "row " << b;
  }
}

TEST_P(Synthetic124MOn, GreedyGenerationMatchesTransformers) {
  for (const auto& g : ref().info.at("generate")) {
    GenerateOptions opts;
    opts.max_new_tokens = g.at("max_new_tokens").get<int64_t>();
    opts.greedy = true;
    opts.stop_at_eos = false;
    EXPECT_EQ(generate(*lm().model, to_ids(g.at("prompt_ids")), opts), to_ids(g.at("ids")))
        << "smallest top-2 gap " << g.at("min_gap").get<double>();
  }
}

TEST_P(Synthetic124MOn, SlidingWindowPerplexityMatchesTransformers) {
  const auto ids = ref().ids32("ppl_ids");
  for (const auto& run : ref().info.at("perplexity").at("runs")) {
    PerplexityOptions opts;
    opts.max_length = run.at("max_length");
    opts.stride = run.at("stride");
    opts.progress = false;
    const auto r = evaluate_perplexity(*lm().model, ids, opts);
    EXPECT_EQ(r.tokens, run.at("tokens").get<int64_t>());
    EXPECT_LE(rel_diff(r.nll, run.at("nll").get<double>()), kPplRelTol) << r.nll;
    EXPECT_LE(rel_diff(r.ppl, run.at("ppl").get<double>()), kPplRelTol) << r.ppl;
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, Synthetic124MOn, ::testing::ValuesIn(test_devices()),
                         [](const ::testing::TestParamInfo<Device>& info) { return device_tag(info.param); });

}  // namespace
}  // namespace gpt2q::conformance
