// Generation: greedy decoding with the KV cache against step-by-step full
// forwards without it; argmax tie rule; the sampler against an independent
// implementation of its documented algorithm, and its distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/gpt2.h"
#include "model/sampling.h"
#include "model/synthetic_weights.h"

using namespace gpt2q;

namespace {

GPT2Config small_config() {
  GPT2Config c;
  c.vocab_size = 97;
  c.n_positions = 32;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 4;
  return c;
}

std::unique_ptr<GPT2Model> small_model(uint64_t seed) {
  Checkpoint ck = make_synthetic_checkpoint(small_config(), ModelKind::CausalLM, seed);
  for (auto& [name, t] : ck.tensors) {
    // Larger weights than the synthetic default so logits are far from flat
    // and greedy choices are not decided by rounding.
    const float k = name == "wte.weight" ? 6.0f : name.ends_with("c_attn.weight") ? 8.0f : 1.0f;
    for (float& v : t.span<float>()) v *= k;
  }
  return GPT2Model::from_checkpoint(ck);
}

// The documented algorithm of TokenSampler, written out again in double.
int32_t documented_sample(std::mt19937_64& rng, const std::vector<float>& logits, float temperature, int64_t top_k) {
  const size_t n = logits.size();
  std::vector<float> z(n);
  for (size_t i = 0; i < n; ++i) z[i] = logits[i] / temperature;
  float kth = -INFINITY;
  if (top_k > 0 && static_cast<size_t>(top_k) < n) {
    std::vector<float> s = z;
    std::sort(s.begin(), s.end(), std::greater<float>());
    kth = s[top_k - 1];
  }
  double mx = -INFINITY;
  for (float v : z)
    if (v >= kth) mx = std::max<double>(mx, v);
  std::vector<double> w(n, 0.0);
  double total = 0;
  for (size_t i = 0; i < n; ++i)
    if (z[i] >= kth) total += (w[i] = std::exp(z[i] - mx));
  double target = static_cast<double>(rng() >> 11) * std::ldexp(1.0, -53) * total, acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += w[i];
    if (w[i] > 0 && acc > target) return static_cast<int32_t>(i);
  }
  return -1;
}

}  // namespace

TEST(Sampling, ArgmaxTakesTheFirstMaximumAndNan) {
  std::vector<float> v{1, 3, 2, 3, 0};
  EXPECT_EQ(argmax_first(v.data(), 5), 1);
  v[4] = NAN;
  EXPECT_EQ(argmax_first(v.data(), 5), 4);
  std::vector<float> flat(7, -2.0f);
  EXPECT_EQ(argmax_first(flat.data(), 7), 0);
}

TEST(Sampling, FollowsTheDocumentedAlgorithmExactly) {
  std::vector<float> logits;
  std::mt19937_64 gen(3);
  for (int i = 0; i < 50; ++i) logits.push_back(static_cast<float>((gen() >> 40) * 0x1p-24 * 6.0 - 3.0));
  logits[10] = logits[11];  // a tie, to exercise top-k's "ties with the k-th are kept"
  for (auto [temp, k] : {std::pair{1.0f, int64_t{0}}, {0.7f, int64_t{5}}, {2.5f, int64_t{1}}, {1.0f, int64_t{200}}}) {
    TokenSampler sampler(42);
    std::mt19937_64 rng(42);
    for (int draw = 0; draw < 500; ++draw)
      ASSERT_EQ(sampler.sample(logits.data(), 50, temp, k), documented_sample(rng, logits, temp, k))
          << "temperature " << temp << " top_k " << k << " draw " << draw;
  }
}

TEST(Sampling, DistributionMatchesSoftmaxOfScaledLogits) {
  // p ∝ exp(logit / T): logits log(1..4), T = 0.5 -> p ∝ 1, 4, 9, 16.
  std::vector<float> logits{std::log(1.0f), std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  TokenSampler sampler(7);
  std::vector<int> counts(4, 0);
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) ++counts[sampler.sample(logits.data(), 4, 0.5f, 0)];
  const double p[4] = {1.0 / 30, 4.0 / 30, 9.0 / 30, 16.0 / 30};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(draws), p[i], 0.01) << i;
  // top_k = 2 keeps only the two largest: p ∝ 3, 4 at T = 1.
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < draws; ++i) ++counts[sampler.sample(logits.data(), 4, 1.0f, 2)];
  EXPECT_EQ(counts[0] + counts[1], 0);
  EXPECT_NEAR(counts[3] / double(draws), 4.0 / 7, 0.01);
  EXPECT_THROW(sampler.sample(logits.data(), 4, 0.0f, 0), Error);
  EXPECT_THROW(sampler.sample(logits.data(), 4, 1.0f, -1), Error);
}

TEST(Generate, GreedyWithCacheEqualsArgmaxOfFullForwards) {
  auto model = small_model(11);
  const std::vector<int32_t> prompt{5, 17, 60, 2};
  GenerateOptions opts;
  opts.max_new_tokens = 10;
  std::vector<int32_t> got = generate(*model, prompt, opts);
  ASSERT_EQ(got.size(), prompt.size() + 10);

  std::vector<int32_t> want = prompt;
  for (int i = 0; i < 10; ++i) {
    Tensor logits = model->lm_logits(TokenBatch::from_sequences({want}, 0));
    const int64_t T = static_cast<int64_t>(want.size());
    want.push_back(argmax_first(logits.data<float>() + (T - 1) * 97, 97));
  }
  EXPECT_EQ(got, want);

  // stop_at_eos: make the 4th generated token the EOS id; generation ends there.
  GPT2Config cfg = small_config();
  cfg.eos_token_id = want[prompt.size() + 3];
  Checkpoint ck = make_synthetic_checkpoint(cfg, ModelKind::CausalLM, 11);
  for (auto& [name, t] : ck.tensors) {
    const float k = name == "wte.weight" ? 6.0f : name.ends_with("c_attn.weight") ? 8.0f : 1.0f;
    for (float& v : t.span<float>()) v *= k;
  }
  auto eos_model = GPT2Model::from_checkpoint(ck);
  opts.stop_at_eos = true;
  std::vector<int32_t> stopped = generate(*eos_model, prompt, opts);
  const size_t first_eos =
      std::find(want.begin() + prompt.size(), want.end(), *cfg.eos_token_id) - want.begin();
  EXPECT_EQ(stopped, std::vector<int32_t>(want.begin(), want.begin() + first_eos + 1));
}

TEST(Generate, SamplingIsReproducibleFromTheSeed) {
  auto model = small_model(12);
  GenerateOptions opts;
  opts.greedy = false;
  opts.max_new_tokens = 12;
  opts.temperature = 1.3f;
  opts.top_k = 20;
  opts.seed = 99;
  std::vector<int32_t> a = generate(*model, {1, 2, 3}, opts), b = generate(*model, {1, 2, 3}, opts);
  EXPECT_EQ(a, b);
  bool some_seed_differs = false;
  for (uint64_t s = 100; s < 105; ++s) {
    opts.seed = s;
    some_seed_differs |= generate(*model, {1, 2, 3}, opts) != a;
  }
  EXPECT_TRUE(some_seed_differs);
}

TEST(Generate, RejectsBadRequests) {
  auto model = small_model(13);
  GenerateOptions opts;
  EXPECT_THROW(generate(*model, {}, opts), Error);
  opts.max_new_tokens = 30;
  EXPECT_THROW(generate(*model, {1, 2, 3}, opts), Error);  // 33 > n_positions 32
  opts.max_new_tokens = 29;
  EXPECT_EQ(generate(*model, {1, 2, 3}, opts).size(), 32u);
  opts.max_new_tokens = 0;
  EXPECT_EQ(generate(*model, {1, 2, 3}, opts), (std::vector<int32_t>{1, 2, 3}));
  opts.max_new_tokens = 2;
  EXPECT_THROW(generate(*model, {1, 97}, opts), Error);
  opts.greedy = false;
  opts.temperature = -1.0f;
  EXPECT_THROW(generate(*model, {1, 2}, opts), Error);
}
