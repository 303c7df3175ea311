// TrainableGPT2's loss and parameter gradients against PyTorch's
// (tests/fixtures/train, made by tools/make_train_fixtures.py), its logits
// against GPT2Model's, and the properties the trainer relies on: gradient
// accumulation, deterministic dropout, HF's initialisation and order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "support/test_env.h"
#include "train/trainable_gpt2.h"

using namespace gpt2q;
using namespace gpt2q::train;

namespace {

struct Fixture {
  std::string name;
  Checkpoint ckpt;
  SafetensorsFile ref;
  nlohmann::json meta;
  TokenBatch batch;
  std::vector<int32_t> labels;
  Task task = Task::LM;
};

Fixture load_fixture(const std::string& name) {
  const auto dir = test::fixtures_dir() / "train";
  Fixture f;
  f.name = name;
  f.ckpt = Checkpoint::load(dir / name);
  f.ref = SafetensorsFile::open(dir / (name + ".ref.safetensors"));
  std::ifstream(dir / (name + ".ref.json")) >> f.meta;
  const Tensor& ids = f.ref.tensors.at("input_ids");
  f.batch.batch = ids.dim(0);
  f.batch.seq = ids.dim(1);
  f.batch.ids.assign(ids.data<int32_t>(), ids.data<int32_t>() + ids.numel());
  const Tensor& lengths = f.ref.tensors.at("lengths");
  f.batch.lengths.assign(lengths.data<int64_t>(), lengths.data<int64_t>() + lengths.numel());
  if (f.ref.tensors.count("labels")) {
    const Tensor& l = f.ref.tensors.at("labels");
    f.labels.assign(l.data<int32_t>(), l.data<int32_t>() + l.numel());
    f.task = Task::Classify;
  }
  return f;
}

// max |got − want| / max |want| over the tensor: the error relative to the
// tensor's scale (elementwise ratios blow up where a gradient crosses zero).
double rel_error(std::span<const float> got, std::span<const float> want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return scale > 0 ? err / scale : err;
}

const char* const kFixtures[] = {"cls", "lm", "lm-gelu-scaled"};

}  // namespace

class TrainGradFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainGradFixture, LossAndEveryGradientMatchPyTorch) {
  Fixture f = load_fixture(GetParam());
  TrainableGPT2 model = TrainableGPT2::from_checkpoint(f.ckpt, f.task, 0, 0);
  // HF's named_parameters order.
  std::vector<std::string> names;
  for (const Parameter& p : model.parameters()) names.push_back(p.name);
  EXPECT_EQ(names, f.meta.at("parameters").get<std::vector<std::string>>());

  model.zero_grad();
  LossValue lv = model.forward_backward(f.batch, f.labels, DropoutContext{});
  const double want_loss = f.meta.at("loss").get<double>();
  EXPECT_NEAR(lv.loss, want_loss, 1e-5 * std::fabs(want_loss)) << f.name;
  int64_t want_count = f.batch.batch;
  if (f.task == Task::LM) {
    want_count = 0;
    for (int64_t n : f.batch.lengths) want_count += n - 1;
  }
  EXPECT_EQ(lv.count, want_count);

  double worst = 0;
  std::string worst_name;
  for (const Parameter& p : model.parameters()) {
    const Tensor& want = f.ref.tensors.at("grad." + p.name);
    ASSERT_EQ(p.grad.shape(), want.shape()) << p.name;
    const double err = rel_error(p.grad.span<float>(), want.span<float>());
    EXPECT_LE(err, 1e-4) << f.name << ": gradient of " << p.name;
    if (err >= worst) {
      worst = err;
      worst_name = p.name;
    }
  }
  std::printf("%s: loss %.9g (PyTorch %.9g), worst gradient error %.3g (%s)\n", f.name.c_str(), lv.loss, want_loss,
              worst, worst_name.c_str());
  // loss() is the same forward without the backward.
  EXPECT_NEAR(model.loss(f.batch, f.labels).loss, lv.loss, 1e-12 * std::fabs(lv.loss));
}

TEST_P(TrainGradFixture, LogitsMatchPyTorchAndGPT2Model) {
  Fixture f = load_fixture(GetParam());
  TrainableGPT2 model = TrainableGPT2::from_checkpoint(f.ckpt, f.task, 0, 0);
  Tensor got = model.logits(f.batch);
  const Tensor& want = f.ref.tensors.at("logits");
  ASSERT_EQ(got.shape(), want.shape());
  std::unique_ptr<GPT2Model> inference = GPT2Model::from_checkpoint(f.ckpt);
  Tensor base = f.task == Task::Classify ? inference->class_logits(f.batch) : inference->lm_logits(f.batch);
  ASSERT_EQ(base.shape(), want.shape());
  // Real positions only for the LM (what padded positions see is not part of the contract).
  const int64_t row = f.task == Task::LM ? want.dim(2) : want.dim(1);
  for (int64_t b = 0; b < f.batch.batch; ++b) {
    const int64_t rows = f.task == Task::LM ? f.batch.lengths[b] : 1;
    const int64_t at = f.task == Task::LM ? b * f.batch.seq * row : b * row;
    std::span<const float> g(got.data<float>() + at, rows * row), w(want.data<float>() + at, rows * row),
        m(base.data<float>() + at, rows * row);
    EXPECT_LE(rel_error(g, w), 1e-5) << f.name << " row " << b << " vs transformers";
    EXPECT_LE(rel_error(g, m), 1e-5) << f.name << " row " << b << " vs GPT2Model";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainGradFixture, ::testing::ValuesIn(kFixtures));

TEST(TrainGrad, GradScaleAccumulates) {
  Fixture f = load_fixture("cls");
  TrainableGPT2 model = TrainableGPT2::from_checkpoint(f.ckpt, f.task, 0, 0);
  model.zero_grad();
  model.forward_backward(f.batch, f.labels, DropoutContext{});
  std::vector<Tensor> once;
  for (const Parameter& p : model.parameters()) once.push_back(p.grad.clone());
  model.zero_grad();
  model.forward_backward(f.batch, f.labels, DropoutContext{}, 0.25f);
  model.forward_backward(f.batch, f.labels, DropoutContext{}, 0.75f);
  for (size_t i = 0; i < once.size(); ++i)
    EXPECT_LE(rel_error(model.parameters()[i].grad.span<float>(), once[i].span<float>()), 1e-6)
        << model.parameters()[i].name;
}

// Dropout masks depend only on (seed, step, micro, site, index): the same
// counters give bit-identical gradients, other counters other ones; and the
// backward applies the forward's masks (the gradient is the derivative of the
// loss with those masks, checked along the gradient direction).
TEST(TrainGrad, DropoutIsDeterministicAndDifferentiated) {
  Fixture f = load_fixture("lm");
  TrainableGPT2 model = TrainableGPT2::from_checkpoint(f.ckpt, Task::LM, 0, 0);
  model.set_dropout(0.2);
  const DropoutContext ctx{true, 99, 7, 1};
  auto grads_at = [&](const DropoutContext& c, double* loss) {
    model.zero_grad();
    *loss = model.forward_backward(f.batch, {}, c).loss;
    std::vector<Tensor> g;
    for (const Parameter& p : model.parameters()) g.push_back(p.grad.clone());
    return g;
  };
  double l1 = 0, l2 = 0, l3 = 0;
  auto g1 = grads_at(ctx, &l1);
  auto g2 = grads_at(ctx, &l2);
  auto g3 = grads_at(DropoutContext{true, 99, 8, 1}, &l3);
  EXPECT_EQ(l1, l2);
  EXPECT_NE(l1, l3);
  const double eval_loss = model.loss(f.batch, {}).loss;
  EXPECT_NE(l1, eval_loss);
  bool all_equal = true, any_differs = false;
  for (size_t i = 0; i < g1.size(); ++i) {
    all_equal &= std::equal(g1[i].span<float>().begin(), g1[i].span<float>().end(), g2[i].span<float>().begin());
    any_differs |= !std::equal(g1[i].span<float>().begin(), g1[i].span<float>().end(), g3[i].span<float>().begin());
  }
  EXPECT_TRUE(all_equal);
  EXPECT_TRUE(any_differs);

  // d/dh loss(θ + h·g) at 0 is |g|²: central difference with the same masks.
  double g2sum = 0;
  for (const Tensor& g : g1)
    for (float v : g.span<float>()) g2sum += static_cast<double>(v) * v;
  std::vector<Tensor> theta;
  for (const Parameter& p : model.parameters()) theta.push_back(p.value.clone());
  const double h = 2e-3 / std::sqrt(g2sum);
  auto loss_at = [&](double step) {
    for (size_t i = 0; i < theta.size(); ++i) {
      float* v = model.parameters()[i].value.data<float>();
      const float* t = theta[i].data<float>();
      const float* g = g1[i].data<float>();
      for (int64_t j = 0; j < theta[i].numel(); ++j) v[j] = static_cast<float>(t[j] + step * g[j]);
    }
    return model.forward_backward(f.batch, {}, ctx).loss;
  };
  const double fd = (loss_at(h) - loss_at(-h)) / (2 * h);
  EXPECT_NEAR(fd, g2sum, 2e-2 * g2sum);
}

TEST(TrainGrad, InitFollowsHuggingFace) {
  GPT2Config c = geometry_config("32x3x2", "test");
  c.vocab_size = 300;
  c.n_positions = 40;
  TrainableGPT2 a = TrainableGPT2::init(c, Task::Classify, 4, 7);
  TrainableGPT2 b = TrainableGPT2::init(c, Task::Classify, 4, 7);
  TrainableGPT2 other = TrainableGPT2::init(c, Task::Classify, 4, 8);
  EXPECT_EQ(a.kind(), ModelKind::SequenceClassification);
  EXPECT_EQ(a.num_labels(), 4);
  EXPECT_EQ(a.config().num_labels(), 4);
  ASSERT_TRUE(a.config().pad_token_id.has_value());
  EXPECT_EQ(*a.config().pad_token_id, *c.eos_token_id);
  const auto specs = expected_tensors(a.config(), a.kind());
  ASSERT_EQ(a.parameters().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const Parameter& p = a.parameters()[i];
    EXPECT_EQ(p.name, specs[i].name);
    EXPECT_EQ(p.value.shape(), specs[i].shape);
    const bool no_decay = p.name.ends_with(".bias") || p.name.find("ln_") != std::string::npos;
    EXPECT_EQ(p.decay, !no_decay) << p.name;
    EXPECT_TRUE(std::equal(p.value.span<float>().begin(), p.value.span<float>().end(),
                           b.parameters()[i].value.span<float>().begin()))
        << p.name << ": same seed, same values";
    double sum = 0, sq = 0;
    for (float v : p.value.span<float>()) {
      sum += v;
      sq += static_cast<double>(v) * v;
    }
    const double n = static_cast<double>(p.value.numel()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    if (p.name.ends_with(".bias")) {
      EXPECT_EQ(sq, 0.0) << p.name;
    } else if (p.name.find("ln_") != std::string::npos) {
      EXPECT_EQ(mean, 1.0) << p.name;
      EXPECT_EQ(sd, 0.0) << p.name;
    } else {
      const double want = p.name.ends_with("c_proj.weight") ? 0.02 / std::sqrt(2.0 * 3) : 0.02;
      EXPECT_NEAR(sd, want, 5 * want / std::sqrt(n)) << p.name;
      EXPECT_NEAR(mean, 0.0, 5 * want / std::sqrt(n)) << p.name;
      EXPECT_FALSE(std::equal(p.value.span<float>().begin(), p.value.span<float>().end(),
                              other.parameters()[i].value.span<float>().begin()))
          << p.name << ": another seed";
    }
  }
}

// The training forward of a fresh model, saved and reloaded as a checkpoint,
// gives GPT2Model's logits; inference_model() sees the same values.
TEST(TrainGrad, InitModelRoundTripsThroughCheckpoint) {
  GPT2Config c = geometry_config("32x2x4", "test");
  c.vocab_size = 200;
  c.n_positions = 32;
  for (Task task : {Task::LM, Task::Classify}) {
    TrainableGPT2 m = TrainableGPT2::init(c, task, task == Task::Classify ? 3 : 0, 5);
    const auto dir = test::temp_dir("train_init");
    save_checkpoint(dir, m.config(), m.kind(), m.canonical_tensors());
    auto loaded = GPT2Model::load(dir);
    TokenBatch tb = TokenBatch::from_sequences({{1, 2, 3, 4, 5, 6}, {7, 8, 9}, {10, 11, 12, 13}}, 199);
    Tensor got = m.logits(tb);
    Tensor want = task == Task::Classify ? loaded->class_logits(tb) : loaded->lm_logits(tb);
    Tensor view = task == Task::Classify ? m.inference_model().class_logits(tb) : m.inference_model().lm_logits(tb);
    if (task == Task::LM) {
      // real positions of row 1 (length 3) only; rows 0 is full
      std::span<const float> g(got.data<float>(), 6 * 200), w(want.data<float>(), 6 * 200);
      EXPECT_LE(rel_error(g, w), 1e-5);
    } else {
      EXPECT_LE(rel_error(got.span<float>(), want.span<float>()), 1e-5);
    }
    EXPECT_TRUE(std::equal(want.span<float>().begin(), want.span<float>().end(), view.span<float>().begin()));
    // inference_model() views the parameters: an in-place update shows.
    for (Parameter& p : m.parameters())
      for (float& v : p.value.span<float>()) v *= 1.5f;
    Tensor updated = m.logits(tb);
    Tensor seen = task == Task::Classify ? m.inference_model().class_logits(tb) : m.inference_model().lm_logits(tb);
    EXPECT_GT(rel_error(updated.span<float>(), got.span<float>()), 1e-3);
    const size_t n = task == Task::LM ? 6 * 200 : 9;  // LM: row 0 (no padding); classify: all logits
    std::span<const float> u(updated.data<float>(), n), s(seen.data<float>(), n);
    EXPECT_LE(rel_error(u, s), 1e-5);
  }
}

TEST(TrainGrad, NewClassifierHeadOnAnLMCheckpoint) {
  Fixture f = load_fixture("lm");
  TrainableGPT2 m = TrainableGPT2::from_checkpoint(f.ckpt, Task::Classify, 3, 11);
  EXPECT_EQ(m.parameters().back().name, "score.weight");
  EXPECT_EQ(m.parameters().back().value.shape(), (Shape{3, 32}));
  EXPECT_EQ(m.config().id2label.size(), 3u);
  // The body is the checkpoint's.
  const Tensor& wte = f.ckpt.get("wte.weight");
  EXPECT_TRUE(std::equal(wte.span<float>().begin(), wte.span<float>().end(),
                         m.parameters()[0].value.span<float>().begin()));
  std::vector<int32_t> labels{0, 2, 1};
  LossValue lv = m.forward_backward(f.batch, labels, DropoutContext{});
  EXPECT_TRUE(std::isfinite(lv.loss));
  EXPECT_EQ(lv.count, 3);
}

TEST(TrainGrad, BadInputsAreErrors) {
  Fixture f = load_fixture("cls");
  TrainableGPT2 m = TrainableGPT2::from_checkpoint(f.ckpt, Task::Classify, 0, 0);
  std::vector<int32_t> short_labels{0, 1};
  EXPECT_THROW(m.forward_backward(f.batch, short_labels, DropoutContext{}), Error);
  std::vector<int32_t> bad_label{0, 1, 2, 4};
  EXPECT_THROW(m.forward_backward(f.batch, bad_label, DropoutContext{}), Error);
  EXPECT_THROW(TrainableGPT2::from_checkpoint(f.ckpt, Task::Classify, 5, 0), Error);  // head has 4 labels
  EXPECT_THROW(m.set_dropout(1.0), Error);
  Fixture lm = load_fixture("lm");
  TrainableGPT2 l = TrainableGPT2::from_checkpoint(lm.ckpt, Task::LM, 0, 0);
  std::vector<int32_t> labels{0, 0, 0};
  EXPECT_THROW(l.forward_backward(lm.batch, labels, DropoutContext{}), Error);
  TokenBatch bad = lm.batch;
  bad.ids[0] = 100000;
  EXPECT_THROW(l.forward_backward(bad, {}, DropoutContext{}), Error);
}

// A 16-bit checkpoint trains in fp32 (values converted exactly); a quantized
// one cannot be trained.
TEST(TrainGrad, SixteenBitCheckpointsConvertQuantizedAreRefused) {
  Checkpoint ck = Checkpoint::load(test::fixtures_dir() / "models" / "fp16-lm");
  TrainableGPT2 m = TrainableGPT2::from_checkpoint(ck, Task::LM, 0, 0);
  for (const Parameter& p : m.parameters()) {
    ASSERT_EQ(p.value.dtype(), DType::F32);
    const Tensor want = ck.get_f32(p.name);
    EXPECT_TRUE(std::equal(want.span<float>().begin(), want.span<float>().end(), p.value.span<float>().begin()))
        << p.name;
  }
  TokenBatch tb = TokenBatch::from_sequences({{5, 6, 7, 8, 9}, {10, 11}}, 0);
  auto inference = GPT2Model::from_checkpoint(ck);
  Tensor want = inference->lm_logits(tb), got = m.logits(tb);
  EXPECT_LE(rel_error(std::span<const float>(got.data<float>(), 5 * ck.config.vocab_size),
                      std::span<const float>(want.data<float>(), 5 * ck.config.vocab_size)),
            1e-5);
  ck.quantization_config = nlohmann::json{{"quant_method", "bitsandbytes"}};
  EXPECT_THROW(TrainableGPT2::from_checkpoint(ck, Task::LM, 0, 0), Error);
}
