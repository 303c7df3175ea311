// Causal self-attention: fast kernel (sgemm path for long queries, direct
// loops for short ones) against the scalar reference, padding masks, and the
// cached variant against the uncached one.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ops/ops.h"
#include "ops/reference.h"

using namespace gpt2q;

namespace {

Tensor random_tensor(Shape shape, uint64_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::mt19937_64 rng(seed);
  for (float& v : t.span<float>()) v = scale * (static_cast<float>((rng() >> 40) * 0x1p-23) - 1.0f);
  return t;
}

Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t cols) {
  Tensor m = Tensor::empty({static_cast<int64_t>(lengths.size()), cols}, DType::U8);
  for (size_t b = 0; b < lengths.size(); ++b)
    for (int64_t j = 0; j < lengths[b]; ++j) m.data<uint8_t>()[b * cols + j] = 1;
  return m;
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape());
  size_t bad = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double g = got.data<float>()[i], w = want.data<float>()[i];
    if (!(std::fabs(g - w) <= tol * (1.0 + std::fabs(w))) && ++bad <= 5)
      ADD_FAILURE() << what << " [" << i << "]: got " << g << " want " << w;
  }
  EXPECT_EQ(bad, 0u) << what;
}

}  // namespace

TEST(OpsAttention, MatchesReferenceWithPadding) {
  // T = 19 takes the sgemm path, T = 3 the direct one; head_dim 8 and 12.
  for (auto [B, T, C, H] : {std::tuple{3, 19, 32, 4}, {2, 3, 24, 2}, {1, 40, 48, 4}}) {
    Tensor qkv = random_tensor({B, T, 3 * C}, 100 + T, 2.0f);
    std::vector<int64_t> lengths;
    for (int b = 0; b < B; ++b) lengths.push_back(std::max<int64_t>(1, T - 5 * b));
    for (bool masked : {false, true}) {
      Tensor mask = masked ? padding_mask(lengths, T) : Tensor();
      Tensor out = Tensor::empty({B, T, C}, DType::F32), ref = Tensor::empty({B, T, C}, DType::F32);
      const float scale = 1.0f / std::sqrt(static_cast<float>(C / H));
      ops::causal_self_attention(qkv, mask, H, scale, out);
      ops::reference::causal_self_attention(qkv, mask, H, scale, ref);
      expect_close(out, ref, 2e-6, "attention T=" + std::to_string(T));
    }
  }
}

TEST(OpsAttention, CausalityAndMaskActuallyRestrictKeys) {
  // Changing a future or a padded key must not change earlier outputs; the
  // first query sees only key 0 and so returns v_0 exactly.
  const int64_t B = 1, T = 12, C = 16, H = 2;
  Tensor qkv = random_tensor({B, T, 3 * C}, 7);
  Tensor mask = padding_mask({9}, T);
  Tensor out = Tensor::empty({B, T, C}, DType::F32);
  ops::causal_self_attention(qkv, mask, H, 0.5f, out);
  for (int64_t d = 0; d < C; ++d) EXPECT_FLOAT_EQ(out.data<float>()[d], qkv.data<float>()[2 * C + d]);
  Tensor changed = qkv.clone();
  for (int64_t t = 9; t < T; ++t)
    for (int64_t c = C; c < 3 * C; ++c) changed.data<float>()[t * 3 * C + c] += 3.0f;  // k, v of padding
  Tensor out2 = Tensor::empty({B, T, C}, DType::F32);
  ops::causal_self_attention(changed, mask, H, 0.5f, out2);
  for (int64_t i = 0; i < T * C; ++i) EXPECT_EQ(out.data<float>()[i], out2.data<float>()[i]) << i;
}

TEST(OpsAttention, CachedEqualsUncached) {
  // Prefill P positions into a cache, then add the rest in steps of 1 and 4:
  // every new row must equal the uncached attention over the whole sequence.
  const int64_t B = 2, T = 23, C = 32, H = 4, hd = C / H, cap = 30, P = 13;
  Tensor qkv = random_tensor({B, T, 3 * C}, 9, 1.5f);
  std::vector<int64_t> lengths{T, 17};
  Tensor full_mask = padding_mask(lengths, T);
  Tensor cache_mask = padding_mask(lengths, cap);
  for (bool use_reference : {false, true}) {
    using Attend = void (*)(const Tensor&, const Tensor&, int64_t, float, Tensor&);
    using AttendCached = void (*)(const Tensor&, Tensor&, Tensor&, int64_t, const Tensor&, int64_t, float, Tensor&);
    const Attend attend =
        use_reference ? Attend(ops::reference::causal_self_attention) : Attend(ops::causal_self_attention);
    const AttendCached attend_cached = use_reference ? AttendCached(ops::reference::causal_self_attention_cached)
                                                     : AttendCached(ops::causal_self_attention_cached);
    Tensor want = Tensor::empty({B, T, C}, DType::F32);
    attend(qkv, full_mask, H, 0.3f, want);

    Tensor ck = Tensor::empty({B, H, cap, hd}, DType::F32), cv = Tensor::empty({B, H, cap, hd}, DType::F32);
    int64_t past = 0;
    for (int64_t step : {P, int64_t{1}, int64_t{4}, int64_t{1}, int64_t{4}}) {
      Tensor part = Tensor::empty({B, step, 3 * C}, DType::F32), out = Tensor::empty({B, step, C}, DType::F32);
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(qkv.data<float>() + (b * T + past) * 3 * C, step * 3 * C, part.data<float>() + b * step * 3 * C);
      attend_cached(part, ck, cv, past, cache_mask, H, 0.3f, out);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < step; ++t)
          for (int64_t c = 0; c < C; ++c)
            EXPECT_NEAR(out.data<float>()[(b * step + t) * C + c], want.data<float>()[(b * T + past + t) * C + c],
                        2e-6)
                << "b " << b << " t " << past + t;
      past += step;
    }
    EXPECT_EQ(past, T);
  }
}

TEST(OpsAttention, CacheOverflowIsAnError) {
  Tensor qkv = random_tensor({1, 4, 24}, 11);
  Tensor ck = Tensor::empty({1, 2, 5, 4}, DType::F32), cv = Tensor::empty({1, 2, 5, 4}, DType::F32);
  Tensor out = Tensor::empty({1, 4, 8}, DType::F32);
  EXPECT_NO_THROW(ops::causal_self_attention_cached(qkv, ck, cv, 1, Tensor(), 2, 1.0f, out));
  EXPECT_THROW(ops::causal_self_attention_cached(qkv, ck, cv, 2, Tensor(), 2, 1.0f, out), Error);
  EXPECT_THROW(ops::causal_self_attention(qkv, Tensor(), 3, 1.0f, out), Error);  // 3 does not divide 8
}

// The sequence-layout form on the CPU: a padded layout is the masked batch,
// and a packed layout (no padding rows at all) gives each text's rows as if
// it ran alone.
TEST(OpsAttention, SequenceLayoutsMatchTheMaskedBatch) {
  const int64_t B = 3, T = 21, C = 32, H = 4;
  const std::vector<int64_t> lengths{21, 9, 1};
  Tensor qkv = random_tensor({B, T, 3 * C}, 31, 1.5f);
  Tensor want = Tensor::empty({B, T, C}, DType::F32);
  ops::causal_self_attention(qkv, padding_mask(lengths, T), H, 0.25f, want);

  const ops::SequenceLayout padded = ops::SequenceLayout::padded(lengths, T, Device::CPU);
  EXPECT_EQ(padded.total_rows, B * T);
  EXPECT_EQ(padded.max_rows, T);
  Tensor got = Tensor::empty({B * T, C}, DType::F32);
  ops::causal_self_attention(qkv.view({B * T, 3 * C}), padded, H, 0.25f, got);
  expect_close(got.view({B, T, C}), want, 1e-6, "padded layout");

  // Packed: each text's rows end to end.
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  Tensor packed_qkv = Tensor::empty({total, 3 * C}, DType::F32);
  int64_t at = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < lengths[b]; ++t, ++at)
      std::copy_n(qkv.data<float>() + (b * T + t) * 3 * C, 3 * C, packed_qkv.data<float>() + at * 3 * C);
  const ops::SequenceLayout packed = ops::SequenceLayout::packed(lengths, Device::CPU);
  EXPECT_EQ(packed.total_rows, total);
  Tensor out = Tensor::empty({total, C}, DType::F32);
  ops::causal_self_attention(packed_qkv, packed, H, 0.25f, out);
  at = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < lengths[b]; ++t, ++at)
      for (int64_t c = 0; c < C; ++c)
        ASSERT_NEAR(out.data<float>()[at * C + c], want.data<float>()[(b * T + t) * C + c],
                    1e-6 * (1 + std::fabs(want.data<float>()[(b * T + t) * C + c])))
            << b << "," << t << "," << c;

  // A layout that does not fit the rows is an error; a length of 0 too.
  Tensor small = Tensor::empty({5, 3 * C}, DType::F32), small_out = Tensor::empty({5, C}, DType::F32);
  EXPECT_THROW(ops::causal_self_attention(small, packed, H, 0.25f, small_out), Error);
  EXPECT_THROW(ops::SequenceLayout::packed({3, 0}, Device::CPU), Error);
}
