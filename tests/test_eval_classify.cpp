// The classification runner on a small synthetic classifier: predictions and
// logits against direct GPT2Model::class_logits calls, batching/padding
// invariance, argmax ties, latency bookkeeping, and the errors.
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/classify.h"
#include "io/dataset.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "support/test_env.h"
#include "text/tokenizer.h"

namespace gpt2q {
namespace {

GPT2Config small_classifier_config() {
  GPT2Config c;
  c.vocab_size = 97;
  c.n_positions = 32;
  c.n_embd = 16;
  c.n_head = 2;
  c.n_layer = 2;
  c.bos_token_id = c.eos_token_id = 96;
  c.id2label = {"a", "b", "c", "d"};
  c.architectures = {"GPT2ForSequenceClassification"};
  return c;
}

std::unique_ptr<GPT2Model> small_classifier(GPT2Config cfg = small_classifier_config(), uint64_t seed = 21) {
  return GPT2Model::from_checkpoint(make_synthetic_checkpoint(cfg, ModelKind::SequenceClassification, seed));
}

// Ids in [1, 96): never the pad id 0 used below, never eos.
std::vector<std::vector<int32_t>> random_sequences(int n, int max_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> seqs(n);
  for (auto& s : seqs) {
    s.resize(1 + rng() % max_len);
    for (auto& id : s) id = static_cast<int32_t>(1 + rng() % 95);
  }
  return seqs;
}

ClassifyOptions quiet(int64_t batch_size, int64_t max_length = 32) {
  ClassifyOptions o;
  o.batch_size = batch_size;
  o.max_length = max_length;
  o.progress = false;
  return o;
}

void expect_matches_direct_calls(const GPT2Model& model, const std::vector<std::vector<int32_t>>& seqs,
                                 int64_t batch_size, int32_t pad_id) {
  auto r = classify_tokens(model, seqs, quiet(batch_size));
  const int64_t K = model.num_labels();
  ASSERT_EQ(r.num_labels, K);
  ASSERT_EQ(r.predictions.size(), seqs.size());
  ASSERT_EQ(r.logits.size(), seqs.size() * K);
  for (size_t b = 0; b < seqs.size(); b += batch_size) {
    size_t e = std::min(seqs.size(), b + static_cast<size_t>(batch_size));
    std::vector<std::vector<int32_t>> chunk(seqs.begin() + b, seqs.begin() + e);
    Tensor direct = model.class_logits(TokenBatch::from_sequences(chunk, pad_id));
    const float* d = direct.data<float>();
    for (size_t i = 0; i < e - b; ++i) {
      int best = 0;
      for (int k = 0; k < K; ++k) {
        EXPECT_EQ(r.logits[(b + i) * K + k], d[i * K + k]) << "sample " << b + i << " class " << k;
        if (d[i * K + k] > d[i * K + best]) best = k;
      }
      EXPECT_EQ(r.predictions[b + i], best) << "sample " << b + i;
    }
  }
}

TEST(EvalClassify, MatchesDirectClassLogitsPerBatch) {
  auto seqs = random_sequences(29, 32, 4);
  auto model = small_classifier();  // no pad_token_id: padding with eos (96)
  for (int64_t bs : {1, 3, 8, 40}) expect_matches_direct_calls(*model, seqs, bs, 96);
  auto cfg = small_classifier_config();
  cfg.pad_token_id = 0;
  auto padded = small_classifier(cfg);
  for (int64_t bs : {1, 5}) expect_matches_direct_calls(*padded, seqs, bs, 0);
}

TEST(EvalClassify, BatchingDoesNotChangeResults) {
  auto seqs = random_sequences(20, 30, 8);
  auto model = small_classifier();
  auto one = classify_tokens(*model, seqs, quiet(1));
  auto many = classify_tokens(*model, seqs, quiet(7));
  for (size_t i = 0; i < one.logits.size(); ++i) EXPECT_NEAR(one.logits[i], many.logits[i], 1e-5) << i;
}

TEST(EvalClassify, TiesGoToTheLowestIndex) {
  auto ck = make_synthetic_checkpoint(small_classifier_config(), ModelKind::SequenceClassification, 3);
  ck.tensors["score.weight"] = Tensor::empty({4, 16}, DType::F32);  // all logits 0
  auto model = GPT2Model::from_checkpoint(ck);
  auto r = classify_tokens(*model, random_sequences(9, 10, 1), quiet(4));
  for (int32_t p : r.predictions) EXPECT_EQ(p, 0);
}

TEST(EvalClassify, LatencyCountsEveryBatchOnce) {
  auto seqs = random_sequences(19, 16, 2);
  auto r = classify_tokens(*small_classifier(), seqs, quiet(4));
  const auto& l = r.latency;
  EXPECT_EQ(l.samples, 19);
  EXPECT_EQ(l.batches, 5);
  EXPECT_GT(l.total_s, 0.0);
  EXPECT_NEAR(l.mean_ms, 1e3 * l.total_s / 19, 1e-9);
  EXPECT_NEAR(l.samples_per_s, 19 / l.total_s, 1e-6 * l.samples_per_s);
  EXPECT_LE(l.p50_ms, l.p90_ms);
  EXPECT_LE(l.p90_ms, l.p99_ms);
}

TEST(EvalClassify, PercentileIsNumpyLinear) {
  // numpy.percentile([50, 10, 40, 20, 30], q): position q/100 * (n - 1) in the
  // sorted values, linear in between.
  std::vector<double> v{50, 10, 40, 20, 30};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 10);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 50);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 30);
  EXPECT_DOUBLE_EQ(percentile(v, 10), 14);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 49.6);
  EXPECT_DOUBLE_EQ(percentile({7.0}, 90), 7.0);
  EXPECT_THROW(percentile({}, 50), Error);
}

TEST(EvalClassify, RejectsBadInput) {
  auto model = small_classifier();
  EXPECT_THROW(classify_tokens(*model, {{}}, quiet(1)), Error);
  EXPECT_THROW(classify_tokens(*model, {{1, 97}}, quiet(1)), Error);
  EXPECT_THROW(classify_tokens(*model, {{1, 2, 3}}, quiet(1, 2)), Error);  // longer than max_length
  EXPECT_THROW(classify_tokens(*model, {{1}}, quiet(0)), Error);
  EXPECT_THROW(classify_tokens(*model, {{1}}, quiet(1, 33)), Error);  // > n_positions

  auto cfg = small_classifier_config();
  cfg.architectures = {"GPT2LMHeadModel"};
  auto lm = GPT2Model::from_checkpoint(make_synthetic_checkpoint(cfg, ModelKind::CausalLM, 1));
  EXPECT_THROW(classify_tokens(*lm, {{1}}, quiet(1)), Error);
  try {
    require_classifier(*lm, "some/dir");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "some/dir is a GPT2LMHeadModel; eval needs GPT2ForSequenceClassification");
  }
  EXPECT_NO_THROW(require_classifier(*model, "some/dir"));
}

TEST(EvalClassify, EvaluateChecksLabelsAndTruncates) {
  auto tok = Tokenizer::load(test::data_dir() / "gpt2-tokenizer");
  GPT2Config cfg = small_classifier_config();
  cfg.vocab_size = 50257;
  cfg.bos_token_id = cfg.eos_token_id = 50256;
  cfg.n_embd = 8;
  cfg.n_layer = 1;
  auto model = small_classifier(cfg);
  Dataset data;
  data.source = "mem.csv";
  data.rows = {{"Hello world, this is a somewhat longer sentence.", 0}, {"Short", 3}, {"Another text", 2}};

  auto seqs = tokenize_for_classification(tok, data, 4);
  auto full = tok.encode(data.rows[0].text);
  ASSERT_GT(full.size(), 4u);
  EXPECT_EQ(seqs[0], std::vector<int32_t>(full.begin(), full.begin() + 4));
  EXPECT_EQ(seqs[1], tok.encode("Short"));

  auto r = evaluate_classifier(*model, tok, data, quiet(2, 4));
  auto direct = classify_tokens(*model, seqs, quiet(2, 4));
  EXPECT_EQ(r.run.predictions, direct.predictions);
  std::vector<int32_t> labels{0, 3, 2};
  auto m = compute_classification_metrics(labels, direct.predictions, 4);
  EXPECT_EQ(r.metrics.confusion, m.confusion);
  EXPECT_EQ(r.metrics.accuracy, m.accuracy);

  data.rows[1].label = 4;
  try {
    evaluate_classifier(*model, tok, data, quiet(2, 4));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mem.csv: row 2"), std::string::npos) << e.what();
  }
  data.rows[1] = {"", 1};
  EXPECT_THROW(evaluate_classifier(*model, tok, data, quiet(2, 4)), Error);
}

}  // namespace
}  // namespace gpt2q
