// The training loop on small synthetic tasks: the loss falls and the held-out
// accuracy rises on a separable classification task; an interrupted and
// resumed run ends with the bytes of an uninterrupted one (dropout on); the
// written checkpoint loads as a GPT2Model whose logits equal the trained
// model's; the seeded data order is a permutation that depends on the epoch.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "model/gpt2.h"
#include "support/test_env.h"
#include "train/batch_order.h"
#include "text/tokenizer.h"
#include "train/trainer.h"

using namespace gpt2q;
using namespace gpt2q::train;
namespace fs = std::filesystem;

namespace {

using gpt2q::test::gpt2_tokenizer_dir;

GPT2Config tiny_config() {
  GPT2Config c;
  c.vocab_size = 64;
  c.n_positions = 32;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.id2label = {"even", "odd"};
  c.pad_token_id = 0;
  return c;
}

// Class c texts use tokens whose id has parity c (ids 2..63), lengths 3..12:
// separable, but only by looking at the tokens.
Examples parity_task(size_t n, uint64_t seed) {
  Examples e;
  uint64_t s = seed;
  auto next = [&] { return s = s * 6364136223846793005ull + 1442695040888963407ull, s >> 33; };
  for (size_t i = 0; i < n; ++i) {
    Example x;
    x.label = static_cast<int32_t>(i % 2);
    const size_t len = 3 + next() % 10;
    for (size_t t = 0; t < len; ++t) x.ids.push_back(static_cast<int32_t>(2 + 2 * (next() % 31) + x.label));
    e.items.push_back(std::move(x));
  }
  return e;
}

TrainOptions quick_options() {
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 8;
  o.lr = 3e-3;
  o.warmup_steps = 4;
  o.seed = 7;
  o.progress = false;
  o.settings = {{"test", "trainer"}};
  return o;
}

std::vector<nlohmann::json> read_log(const fs::path& p) {
  std::vector<nlohmann::json> v;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

TEST(Trainer, LossFallsAndAccuracyRisesOnASeparableTask) {
  auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 1);
  const Examples train = parity_task(160, 1), eval = parity_task(40, 2);
  const EvalReport before = evaluate(model, eval, 16);
  const auto dir = test::temp_dir("trainer_falls");
  const OutputLayout out{dir / "out"};
  const TrainSummary s = run_training(model, train, eval, quick_options(), out, gpt2_tokenizer_dir());
  EXPECT_EQ(s.steps, 3 * 20);
  EXPECT_EQ(s.total_steps, s.steps);
  ASSERT_TRUE(s.last_eval.has_value());
  EXPECT_LT(s.last_eval->loss, 0.5 * before.loss);
  EXPECT_GE(s.last_eval->metrics->accuracy, 0.95) << "before training: " << before.metrics->accuracy;

  // The log: a start record, one line per step with falling loss, one eval per epoch.
  const auto log = read_log(out.log_path());
  ASSERT_EQ(log.size(), 1u + 60u + 3u);
  EXPECT_EQ(log[0]["type"], "start");
  double first = 0, last = 0;
  int evals = 0;
  for (const auto& r : log) {
    if (r["type"] == "eval") ++evals;
    if (r["type"] != "train") continue;
    for (const char* key : {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(r.contains(key));
    const int64_t step = r["step"].get<int64_t>();
    if (step <= 5) first += r["loss"].get<double>() / 5;
    if (step > 55) last += r["loss"].get<double>() / 5;
  }
  EXPECT_EQ(evals, 3);
  EXPECT_LT(last, 0.5 * first);
  fs::remove_all(dir);
}

TEST(EpochEval, LossAndAccuracyAgreeWithTheModelsOwnLoss) {
  auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 5);
  const Examples data = parity_task(37, 4);
  const EvalReport r = evaluate(model, data, 8);  // 5 batches, the last one short
  std::vector<size_t> idx(data.items.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::vector<int32_t> labels;
  const TokenBatch batch = make_batch(data, idx, 0, &labels);
  const LossValue whole = model.loss(batch, labels);
  EXPECT_EQ(r.count, 37);
  EXPECT_NEAR(r.loss, whole.loss, 1e-5 * whole.loss);
  const Tensor z = model.logits(batch);
  int64_t correct = 0;
  for (int64_t b = 0; b < batch.batch; ++b)
    correct += (z.data<float>()[2 * b + 1] > z.data<float>()[2 * b]) == (labels[b] == 1);
  ASSERT_TRUE(r.metrics.has_value());
  EXPECT_EQ(r.metrics->correct, correct);
  EXPECT_DOUBLE_EQ(r.score(), r.metrics->accuracy);
}

TEST(Trainer, SavedCheckpointLoadsWithTheTrainedLogits) {
  auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 3);
  const Examples train = parity_task(24, 3);
  const auto dir = test::temp_dir("trainer_ckpt");
  const OutputLayout out{dir / "out"};
  TrainOptions o = quick_options();
  o.epochs = 1;
  run_training(model, train, {}, o, out, gpt2_tokenizer_dir());
  for (const fs::path& d : {out.best_dir(), out.last_dir()}) {
    auto loaded = GPT2Model::load(d);
    ASSERT_TRUE(loaded->is_classifier());
    EXPECT_EQ(loaded->config().id2label, tiny_config().id2label);
    std::vector<size_t> idx(train.items.size());
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::vector<int32_t> labels;
    const TokenBatch batch = make_batch(train, idx, 0, &labels);
    const Tensor want = model.logits(batch), got = loaded->class_logits(batch);
    ASSERT_EQ(got.shape(), want.shape());
    for (int64_t i = 0; i < got.numel(); ++i)
      EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-5f * (1 + std::abs(want.data<float>()[i])));
  }
  fs::remove_all(dir);
}

std::string model_bytes(const fs::path& dir) { return read_file(dir / "model.safetensors"); }

// Train lines without their timing fields, and eval lines.
std::vector<nlohmann::json> log_without_timing(const fs::path& p) {
  auto v = read_log(p);
  for (auto& r : v) {
    r.erase("tokens_per_s");
  }
  return v;
}

TEST(Trainer, ResumeAfterAnInterruptionEqualsTheUninterruptedRunBitForBit) {
  GPT2Config cfg = tiny_config();
  cfg.embd_pdrop = cfg.attn_pdrop = cfg.resid_pdrop = 0.1;  // dropout masks must resume too
  const Examples train = parity_task(60, 5), eval = parity_task(20, 6);
  TrainOptions o = quick_options();
  o.epochs = 2;  // 8 steps per epoch, 16 in all
  o.weight_decay = 0.01;
  o.save_every = 3;
  const auto dir = test::temp_dir("trainer_resume");

  const OutputLayout whole{dir / "whole"};
  {
    auto model = TrainableGPT2::init(cfg, Task::Classify, 2, 11);
    run_training(model, train, eval, o, whole, gpt2_tokenizer_dir());
  }
  // Stopped at step 5 (state from step 3) and at step 10 (state from the end
  // of epoch 1, step 8, then step 9): each resume redoes the lost steps.
  const OutputLayout parts{dir / "parts"};
  for (int64_t stop : {5, 10, 0}) {
    auto model = TrainableGPT2::init(cfg, Task::Classify, 2, 11);
    TrainOptions p = o;
    p.stop_after_steps = stop;
    p.resume = stop != 5;
    const TrainSummary s = run_training(model, train, eval, p, parts, gpt2_tokenizer_dir());
    EXPECT_EQ(s.stopped, stop != 0);
    EXPECT_EQ(s.steps, stop ? stop : 16);
  }
  EXPECT_TRUE(model_bytes(whole.last_dir()) == model_bytes(parts.last_dir())) << "last checkpoints differ";
  EXPECT_TRUE(model_bytes(whole.best_dir()) == model_bytes(parts.best_dir())) << "best checkpoints differ";
  EXPECT_EQ(log_without_timing(whole.log_path()), log_without_timing(parts.log_path()));
  fs::remove_all(dir);
}

TEST(Trainer, ResumeRefusesOtherSettingsAndAFreshRunRefusesAUsedDir) {
  const Examples train = parity_task(16, 8);
  const auto dir = test::temp_dir("trainer_refuse");
  const OutputLayout out{dir / "out"};
  TrainOptions o = quick_options();
  o.epochs = 1;
  {
    auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 1);
    run_training(model, train, {}, o, out, gpt2_tokenizer_dir());
  }
  auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 1);
  try {
    run_training(model, train, {}, o, out, gpt2_tokenizer_dir());
    ADD_FAILURE() << "a fresh run wrote into a used dir";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not empty"), std::string::npos) << e.what();
  }
  o.resume = true;
  o.settings = {{"test", "something else"}};
  try {
    run_training(model, train, {}, o, out, gpt2_tokenizer_dir());
    ADD_FAILURE() << "resumed with other settings";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different test"), std::string::npos) << e.what();
  }
  const OutputLayout empty{dir / "empty"};
  EXPECT_THROW(run_training(model, train, {}, o, empty, gpt2_tokenizer_dir()), Error);
  fs::remove_all(dir);
}

TEST(Trainer, AFreshRunThatFailsLeavesNoOutput) {
  const auto dir = test::temp_dir("trainer_fail");
  const OutputLayout out{dir / "out"};
  fs::create_directories(dir / "no_tokenizer");
  auto model = TrainableGPT2::init(tiny_config(), Task::Classify, 2, 1);
  EXPECT_THROW(run_training(model, parity_task(16, 8), {}, quick_options(), out, dir / "no_tokenizer"), Error);
  EXPECT_TRUE(!fs::exists(out.root) || fs::is_empty(out.root));
  fs::remove_all(dir);
}

TEST(BatchOrder, SeededPermutationPerEpoch) {
  const auto a = epoch_order(100, 5, 0), b = epoch_order(100, 5, 0), c = epoch_order(100, 5, 1),
             d = epoch_order(100, 6, 0);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(batches_per_epoch(100, 16), 7);
  EXPECT_EQ(batches_per_epoch(96, 16), 6);
}

}  // namespace

namespace {

TEST(TrainData, LmBlocksCutTheTokenStreamAndSplitKeepsFileOrder) {
  const auto dir = test::temp_dir("train_data");
  const std::string text = read_file(test::data_dir() / "wikitext-2-raw" / "wiki.test.raw").substr(0, 3000);
  write_file_atomic(dir / "t.txt", text);
  const Tokenizer tok = Tokenizer::load(gpt2_tokenizer_dir());
  const auto ids = tok.encode(text);
  const Examples blocks = lm_blocks(tok, dir / "t.txt", 50);
  std::vector<int32_t> joined;
  for (size_t i = 0; i < blocks.items.size(); ++i) {
    const auto& b = blocks.items[i];
    EXPECT_EQ(b.label, -1);
    if (i + 1 < blocks.items.size()) {
      EXPECT_EQ(b.ids.size(), 50u);
    }
    EXPECT_GE(b.ids.size(), 2u);
    joined.insert(joined.end(), b.ids.begin(), b.ids.end());
  }
  // Everything but a last single token (nothing to predict from it) is kept.
  ASSERT_LE(ids.size() - joined.size(), 1u);
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(), ids.begin()));
  EXPECT_EQ(blocks.tokens(), static_cast<int64_t>(joined.size()));

  const auto [train, eval] = split_blocks(blocks, 0.25, 9);
  const size_t n = blocks.items.size();
  EXPECT_EQ(eval.items.size(), static_cast<size_t>(std::llround(0.25 * static_cast<double>(n))));
  EXPECT_EQ(train.items.size() + eval.items.size(), n);
  // Each part is a subsequence of the blocks in file order.
  for (const Examples* part : {&train, &eval}) {
    size_t at = 0;
    for (const auto& b : part->items) {
      while (at < n && blocks.items[at].ids != b.ids) ++at;
      EXPECT_LT(at, n);
      ++at;
    }
  }
  EXPECT_THROW(lm_blocks(tok, dir / "missing.txt", 50), Error);
  fs::remove_all(dir);
}

}  // namespace
