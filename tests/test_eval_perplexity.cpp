// Sliding-window perplexity: the window schedule against a transcription of
// the transformers guide's loop, and the evaluation against a naive per-token
// NLL computed here from GPT2Model::lm_logits on a small synthetic model.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/perplexity.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"

namespace gpt2q {
namespace {

// The guide's loop, with the label shift made explicit: labels outside the
// last trg_len positions are -100, and the shift drops the window's first
// label. Returns, per window, the positions whose NLL enters the loss.
std::vector<std::vector<int64_t>> guide_scored_positions(int64_t n, int64_t max_length, int64_t stride) {
  std::vector<std::vector<int64_t>> out;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += stride) {
    int64_t end = std::min(begin + max_length, n);
    int64_t trg_len = end - prev_end;
    std::vector<int64_t> scored;
    for (int64_t p = begin; p < end; ++p) {
      bool has_label = p >= end - trg_len;
      bool survives_shift = p > begin;
      if (has_label && survives_shift) scored.push_back(p);
    }
    out.push_back(scored);
    prev_end = end;
    if (end == n) break;
  }
  return out;
}

TEST(EvalPerplexitySchedule, MatchesTheGuideLoopAndScoresEachTokenOnce) {
  for (int64_t n : {0, 1, 2, 3, 10, 17, 64, 100, 1025}) {
    for (int64_t L : {1, 2, 3, 8, 16, 1024}) {
      for (int64_t S : {int64_t{1}, L / 2, L - 1, L}) {
        if (S < 1 || S > L) continue;
        SCOPED_TRACE(testing::Message() << "n=" << n << " L=" << L << " S=" << S);
        auto windows = perplexity_windows(n, L, S);
        auto guide = guide_scored_positions(n, L, S);
        ASSERT_EQ(windows.size(), guide.size());
        std::map<int64_t, int> times_scored;
        for (size_t i = 0; i < windows.size(); ++i) {
          const auto& w = windows[i];
          EXPECT_EQ(w.begin, static_cast<int64_t>(i) * S);
          EXPECT_EQ(w.end, std::min(w.begin + L, n));
          EXPECT_LE(w.end - w.begin, L);
          EXPECT_EQ(w.end == n, i + 1 == windows.size()) << "only the last window reaches the end";
          std::vector<int64_t> mine;
          for (int64_t p = w.score_begin; p < w.end; ++p) mine.push_back(p);
          EXPECT_EQ(mine, guide[i]) << "window " << i;
          EXPECT_EQ(w.scored(), static_cast<int64_t>(guide[i].size()));
          for (int64_t p : mine) ++times_scored[p];
        }
        for (auto [p, k] : times_scored) EXPECT_EQ(k, 1) << "position " << p;
        if (S < L) {
          // Every token after the first, exactly once.
          EXPECT_EQ(static_cast<int64_t>(times_scored.size()), std::max<int64_t>(0, n - 1));
          if (n > 1) {
            EXPECT_EQ(times_scored.begin()->first, 1);
            EXPECT_EQ(times_scored.rbegin()->first, n - 1);
          }
        } else {
          // Disjoint windows: each window's first token has no context.
          for (int64_t p = 0; p < n; ++p) EXPECT_EQ(times_scored.count(p), p % L == 0 ? 0u : 1u) << p;
        }
      }
    }
  }
}

TEST(EvalPerplexitySchedule, RejectsBadArguments) {
  EXPECT_THROW(perplexity_windows(10, 0, 1), Error);
  EXPECT_THROW(perplexity_windows(10, 4, 0), Error);
  EXPECT_THROW(perplexity_windows(10, 4, 5), Error);
  EXPECT_THROW(perplexity_windows(-1, 4, 2), Error);
}

GPT2Config small_lm_config() {
  GPT2Config c;
  c.vocab_size = 97;
  c.n_positions = 32;
  c.n_embd = 16;
  c.n_head = 2;
  c.n_layer = 2;
  c.bos_token_id = c.eos_token_id = 96;
  return c;
}

std::unique_ptr<GPT2Model> small_lm(uint64_t seed = 11) {
  return GPT2Model::from_checkpoint(make_synthetic_checkpoint(small_lm_config(), ModelKind::CausalLM, seed));
}

std::vector<int32_t> random_ids(int64_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// Naive reference: each window through lm_logits, log-softmax written out
// in long double, positions chosen by the guide's loop.
struct Naive {
  double nll_sum = 0;
  int64_t tokens = 0;
};
Naive naive_perplexity(const GPT2Model& model, const std::vector<int32_t>& ids, int64_t L, int64_t S) {
  const int64_t V = model.config().vocab_size, n = static_cast<int64_t>(ids.size());
  auto guide = guide_scored_positions(n, L, S);
  Naive r;
  int64_t begin = 0;
  for (const auto& scored : guide) {
    int64_t end = std::min(begin + L, n);
    std::vector<std::vector<int32_t>> seq{{ids.begin() + begin, ids.begin() + end}};
    Tensor logits = model.lm_logits(TokenBatch::from_sequences(seq, 0));
    const float* lp = logits.data<float>();
    for (int64_t p : scored) {
      const float* row = lp + (p - 1 - begin) * V;
      long double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<long double>(row[v]));
      r.nll_sum += static_cast<double>(std::log(z) - row[ids[p]]);
      ++r.tokens;
    }
    begin += S;
  }
  return r;
}

TEST(EvalPerplexity, MatchesNaivePerTokenNll) {
  auto model = small_lm();
  auto ids = random_ids(150, 97, 3);
  struct Case {
    int64_t L, S;
  };
  for (Case c : {Case{32, 16}, Case{32, 32}, Case{32, 1}, Case{20, 7}, Case{5, 4}, Case{2, 1}}) {
    SCOPED_TRACE(testing::Message() << "L=" << c.L << " S=" << c.S);
    PerplexityOptions opts;
    opts.max_length = c.L;
    opts.stride = c.S;
    opts.progress = false;
    auto r = evaluate_perplexity(*model, ids, opts);
    auto ref = naive_perplexity(*model, ids, c.L, c.S);
    EXPECT_EQ(r.tokens, ref.tokens);
    EXPECT_EQ(r.windows, static_cast<int64_t>(perplexity_windows(150, c.L, c.S).size()));
    EXPECT_NEAR(r.nll, ref.nll_sum / ref.tokens, 2e-6);
    EXPECT_NEAR(r.ppl, std::exp(ref.nll_sum / ref.tokens), 2e-6 * r.ppl);
    EXPECT_EQ(r.max_length, c.L);
    EXPECT_EQ(r.stride, c.S);
  }
}

TEST(EvalPerplexity, OneWindowIsThePlainCausalLmLoss) {
  auto model = small_lm(5);
  auto ids = random_ids(32, 97, 9);
  PerplexityOptions opts;
  opts.progress = false;  // defaults: max_length = n_positions = 32, stride 16
  auto r = evaluate_perplexity(*model, ids, opts);
  EXPECT_EQ(r.max_length, 32);
  EXPECT_EQ(r.stride, 16);
  EXPECT_EQ(r.windows, 1);
  EXPECT_EQ(r.tokens, 31);
  auto ref = naive_perplexity(*model, ids, 32, 32);
  EXPECT_NEAR(r.nll, ref.nll_sum / 31, 2e-6);
  // Deterministic: same input, same bits.
  EXPECT_EQ(evaluate_perplexity(*model, ids, opts).nll, r.nll);
}

TEST(EvalPerplexity, TokenNllIsStableForLargeLogits) {
  std::vector<float> row{1000.0f, 999.0f, -1000.0f};
  double expect = std::log(1.0 + std::exp(-1.0) + std::exp(-2000.0));  // target 0
  EXPECT_NEAR(token_nll(row, 0), expect, 1e-12);
  EXPECT_NEAR(token_nll(row, 1), expect + 1.0, 1e-12);
  EXPECT_TRUE(std::isfinite(token_nll(row, 2)));
}

TEST(EvalPerplexity, TokenNllMatchesLongDoubleOnLongRows) {
  std::mt19937_64 rng(17);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (size_t n : {1u, 7u, 8u, 9u, 1000u, 50257u}) {
    std::vector<float> row(n);
    for (auto& v : row) v = dist(rng) + 300.0f;  // large offset: needs the max shift
    long double m = *std::max_element(row.begin(), row.end()), z = 0;
    for (float v : row) z += std::exp(static_cast<long double>(v) - m);
    for (int32_t t : {0, static_cast<int32_t>(n / 2), static_cast<int32_t>(n - 1)}) {
      double expect = static_cast<double>(m + std::log(z) - row[t]);
      EXPECT_NEAR(token_nll(row, t), expect, 1e-6) << "n=" << n << " t=" << t;
    }
  }
}

TEST(EvalPerplexity, RejectsBadInput) {
  auto model = small_lm();
  auto ids = random_ids(40, 97, 1);
  PerplexityOptions opts;
  opts.progress = false;
  opts.max_length = 33;  // > n_positions
  EXPECT_THROW(evaluate_perplexity(*model, ids, opts), Error);
  opts.max_length = 8;
  opts.stride = 9;
  EXPECT_THROW(evaluate_perplexity(*model, ids, opts), Error);
  opts.stride = 4;
  std::vector<int32_t> one{5};
  EXPECT_THROW(evaluate_perplexity(*model, one, opts), Error);
  auto bad = ids;
  bad[7] = 97;
  EXPECT_THROW(evaluate_perplexity(*model, bad, opts), Error);
  opts.max_length = 1;
  opts.stride = 1;
  EXPECT_THROW(evaluate_perplexity(*model, ids, opts), Error) << "max_length 1 scores nothing";
}

}  // namespace
}  // namespace gpt2q
