// GPT2Model's forward against an independent scalar GPT-2 written here from
// the transformers formulas (naive loops, double precision), on small
// synthetic configs with padded batches; the KV cache against the full
// forward; padded rows against the same sequences alone; a block range
// against the whole forward; the classifier's pooled-position rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "core/half.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"

using namespace gpt2q;

namespace {

using Vec = std::vector<double>;

// ---- The naive reference: nothing here calls gpt2q's ops or model code. ----
struct NaiveGPT2 {
  GPT2Config cfg;
  std::map<std::string, Vec> w;  // canonical name -> values as double

  explicit NaiveGPT2(const Checkpoint& ck) : cfg(ck.config) {
    for (const auto& [name, t] : ck.tensors) {
      Vec v(static_cast<size_t>(t.numel()));
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (t.dtype() == DType::F32) v[i] = t.data<float>()[i];
        else if (t.dtype() == DType::F16) v[i] = half_to_float(t.data<uint16_t>()[i]);
        else v[i] = bf16_to_float(t.data<uint16_t>()[i]);
      }
      w[name] = std::move(v);
    }
  }

  const Vec& W(const std::string& n) const { return w.at(n); }

  // x[T][n] -> LayerNorm per row.
  void layer_norm(std::vector<Vec>& x, const std::string& p) const {
    for (Vec& row : x) {
      double mean = 0, var = 0;
      for (double v : row) mean += v;
      mean /= row.size();
      for (double v : row) var += (v - mean) * (v - mean);
      var /= row.size();
      for (size_t c = 0; c < row.size(); ++c)
        row[c] = (row[c] - mean) / std::sqrt(var + cfg.layer_norm_epsilon) * W(p + ".weight")[c] + W(p + ".bias")[c];
    }
  }

  // Conv1D: y = x·W + b, W stored [in, out].
  std::vector<Vec> conv1d(const std::vector<Vec>& x, const std::string& p, size_t out) const {
    const Vec& wt = W(p + ".weight");
    const Vec& b = W(p + ".bias");
    std::vector<Vec> y(x.size(), Vec(out));
    for (size_t t = 0; t < x.size(); ++t)
      for (size_t o = 0; o < out; ++o) {
        double s = b[o];
        for (size_t i = 0; i < x[t].size(); ++i) s += x[t][i] * wt[i * out + o];
        y[t][o] = s;
      }
    return y;
  }

  double act(double x) const {
    if (cfg.activation_function == "gelu") return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  }

  // Final hidden states of one row: `len` real tokens, then padding whose
  // keys are masked (HF's attention_mask), positions 0..T-1.
  std::vector<Vec> hidden(const std::vector<int32_t>& ids, size_t len) const {
    const size_t T = ids.size(), C = cfg.n_embd, H = cfg.n_head, hd = C / H, I = cfg.inner();
    std::vector<Vec> h(T, Vec(C));
    for (size_t t = 0; t < T; ++t)
      for (size_t c = 0; c < C; ++c) h[t][c] = W("wte.weight")[ids[t] * C + c] + W("wpe.weight")[t * C + c];
    for (int64_t l = 0; l < cfg.n_layer; ++l) {
      const std::string p = "h." + std::to_string(l) + ".";
      std::vector<Vec> a = h;
      layer_norm(a, p + "ln_1");
      std::vector<Vec> qkv = conv1d(a, p + "attn.c_attn", 3 * C);
      double scale = cfg.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(hd)) : 1.0;
      if (cfg.scale_attn_by_inverse_layer_idx) scale /= (l + 1);
      std::vector<Vec> att(T, Vec(C, 0.0));
      for (size_t hh = 0; hh < H; ++hh)
        for (size_t i = 0; i < T; ++i) {
          Vec s(T, -INFINITY);
          double mx = -INFINITY;
          for (size_t j = 0; j <= i; ++j) {
            if (j >= len) continue;  // padded key
            double d = 0;
            for (size_t e = 0; e < hd; ++e) d += qkv[i][hh * hd + e] * qkv[j][C + hh * hd + e];
            s[j] = d * scale;
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (size_t j = 0; j < T; ++j) sum += s[j] == -INFINITY ? 0 : std::exp(s[j] - mx);
          for (size_t j = 0; j < T; ++j) {
            if (s[j] == -INFINITY) continue;
            double pj = std::exp(s[j] - mx) / sum;
            for (size_t e = 0; e < hd; ++e) att[i][hh * hd + e] += pj * qkv[j][2 * C + hh * hd + e];
          }
        }
      std::vector<Vec> proj = conv1d(att, p + "attn.c_proj", C);
      for (size_t t = 0; t < T; ++t)
        for (size_t c = 0; c < C; ++c) h[t][c] += proj[t][c];
      a = h;
      layer_norm(a, p + "ln_2");
      std::vector<Vec> f = conv1d(a, p + "mlp.c_fc", I);
      for (Vec& row : f)
        for (double& v : row) v = act(v);
      proj = conv1d(f, p + "mlp.c_proj", C);
      for (size_t t = 0; t < T; ++t)
        for (size_t c = 0; c < C; ++c) h[t][c] += proj[t][c];
    }
    layer_norm(h, "ln_f");
    return h;
  }

  std::vector<Vec> logits(const std::vector<int32_t>& ids, size_t len) const {
    std::vector<Vec> h = hidden(ids, len);
    const size_t V = cfg.vocab_size, C = cfg.n_embd;
    const Vec& head = w.count("lm_head.weight") ? W("lm_head.weight") : W("wte.weight");
    std::vector<Vec> out(h.size(), Vec(V));
    for (size_t t = 0; t < h.size(); ++t)
      for (size_t v = 0; v < V; ++v) {
        double s = 0;
        for (size_t c = 0; c < C; ++c) s += h[t][c] * head[v * C + c];
        out[t][v] = s;
      }
    return out;
  }
};

GPT2Config small_config() {
  GPT2Config c;
  c.vocab_size = 97;
  c.n_positions = 40;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 4;
  return c;
}

// A second geometry that exercises the less common config switches.
GPT2Config odd_config() {
  GPT2Config c = small_config();
  c.n_embd = 24;
  c.n_head = 2;
  c.n_layer = 3;
  c.n_inner = 40;
  c.layer_norm_epsilon = 1e-3;
  c.scale_attn_by_inverse_layer_idx = true;
  c.activation_function = "gelu";
  return c;
}

// make_synthetic_checkpoint's weights are small (|w| <= 0.05): attention
// would be nearly uniform and GELU nearly linear, so errors in either would
// hide. Scaling q/k/v and c_fc makes scores O(1..10) and GELU inputs O(1).
Checkpoint sharpened(const GPT2Config& cfg, ModelKind kind, uint64_t seed) {
  Checkpoint ck = make_synthetic_checkpoint(cfg, kind, seed);
  for (auto& [name, t] : ck.tensors) {
    float k = 1.0f;
    if (name.ends_with("attn.c_attn.weight")) k = 8.0f;
    if (name.ends_with("mlp.c_fc.weight")) k = 10.0f;
    if (name == "wte.weight") k = 4.0f;
    for (float& v : t.span<float>()) v *= k;
  }
  return ck;
}

TokenBatch padded_batch(int32_t pad) {
  return TokenBatch::from_sequences({{5, 17, 96, 0, 33, 2, 71, 8, 8, 40, 12},
                                     {3, 90, 44, 61, 7},
                                     {50},
                                     {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
                                    pad);
}

// |got - want| <= tol * (|want| + mean |want|) for every logit.
void expect_logits_close(const float* got, const Vec& want, double tol, const std::string& what) {
  double scale = 0;
  for (double v : want) scale += std::fabs(v);
  scale /= want.size();
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (std::fabs(want[i]) + scale)) && ++bad <= 3)
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << " want " << want[i];
  EXPECT_EQ(bad, 0) << what;
}

void check_against_naive(const Checkpoint& ck, double tol) {
  auto model = GPT2Model::from_checkpoint(ck);
  NaiveGPT2 naive(ck);
  TokenBatch tb = padded_batch(0);
  Tensor logits = model->lm_logits(tb);
  const int64_t V = ck.config.vocab_size;
  ASSERT_EQ(logits.shape(), (Shape{tb.batch, tb.seq, V}));
  for (int64_t b = 0; b < tb.batch; ++b) {
    std::vector<int32_t> row(tb.ids.begin() + b * tb.seq, tb.ids.begin() + (b + 1) * tb.seq);
    std::vector<Vec> want = naive.logits(row, tb.lengths[b]);
    // Every position, padded ones included: HF gives them finite values too.
    for (int64_t t = 0; t < tb.seq; ++t)
      expect_logits_close(logits.data<float>() + (b * tb.seq + t) * V, want[t], tol,
                          "row " + std::to_string(b) + " pos " + std::to_string(t));
  }
}

}  // namespace

TEST(ModelForward, MatchesNaiveScalarForwardOnPaddedBatch) {
  check_against_naive(sharpened(small_config(), ModelKind::CausalLM, 1), 2e-5);
}

TEST(ModelForward, HonoursNInnerEpsLayerScaleAndExactGelu) {
  check_against_naive(sharpened(odd_config(), ModelKind::CausalLM, 2), 2e-5);
}

TEST(ModelForward, UntiedLmHeadIsUsedWhenPresent) {
  Checkpoint ck = sharpened(small_config(), ModelKind::CausalLM, 3);
  Tensor head = ck.tensors.at("wte.weight").clone();
  for (float& v : head.span<float>()) v = -0.5f * v + 0.01f;
  ck.tensors["lm_head.weight"] = head;
  check_against_naive(ck, 2e-5);
  auto model = GPT2Model::from_checkpoint(ck);
  bool listed = false;
  for (const auto& [name, bytes] : model->weight_bytes()) listed |= name == "lm_head" && bytes == head.nbytes();
  EXPECT_TRUE(listed);
}

TEST(ModelForward, Float16WeightsStaySixteenBitAndAreCounted) {
  Checkpoint ck = sharpened(small_config(), ModelKind::CausalLM, 4);
  size_t expected = 0;
  for (auto& [name, t] : ck.tensors) {
    Tensor h = Tensor::empty(t.shape(), DType::F16);
    for (int64_t i = 0; i < t.numel(); ++i) h.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
    t = h;
    // Matrices (wte, wpe, block projection weights) are held as stored;
    // biases and LayerNorm parameters (1-D) in fp32.
    expected += static_cast<size_t>(t.numel()) * (t.ndim() == 2 ? 2 : 4);
  }
  check_against_naive(ck, 2e-5);  // the naive model reads the same F16 values
  auto model = GPT2Model::from_checkpoint(ck);
  EXPECT_EQ(model->total_weight_bytes(), expected);
  for (const auto& bw : model->blocks())
    for (const Linear* l : {bw.c_attn.get(), bw.attn_c_proj.get(), bw.c_fc.get(), bw.mlp_c_proj.get()})
      EXPECT_EQ(l->format(), "f16");
  // The projections are views of the checkpoint's tensors: no copy.
  TokenBatch tb = TokenBatch::from_sequences({{4, 5, 6}}, 0);
  Tensor before = model->lm_logits(tb);
  ck.tensors.at("h.0.mlp.c_fc.weight").data<uint16_t>()[0] ^= 0x4000;
  Tensor after = model->lm_logits(tb);
  EXPECT_NE(std::memcmp(before.raw(), after.raw(), before.nbytes()), 0);
}

TEST(ModelForward, Float32WeightsAreViewsOfTheCheckpoint) {
  Checkpoint ck = sharpened(small_config(), ModelKind::CausalLM, 5);
  auto model = GPT2Model::from_checkpoint(ck);
  TokenBatch tb = TokenBatch::from_sequences({{4, 5, 6}}, 0);
  Tensor before = model->lm_logits(tb);
  // Writing through the checkpoint's tensor must show in the model: no copy.
  ck.tensors.at("ln_f.bias").data<float>()[0] += 1.0f;
  Tensor after = model->lm_logits(tb);
  EXPECT_NE(before.data<float>()[0], after.data<float>()[0]);
  size_t params = 0;
  for (auto& [name, t] : ck.tensors) params += t.nbytes();
  EXPECT_EQ(model->total_weight_bytes(), params);
}

TEST(ModelForward, PaddedRowsEqualTheSequencesAlone) {
  auto model = GPT2Model::from_checkpoint(sharpened(small_config(), ModelKind::CausalLM, 6));
  const int64_t V = 97;
  for (int32_t pad : {0, 96}) {
    TokenBatch tb = padded_batch(pad);
    Tensor batched = model->lm_logits(tb);
    for (int64_t b = 0; b < tb.batch; ++b) {
      std::vector<int32_t> seq(tb.ids.begin() + b * tb.seq, tb.ids.begin() + b * tb.seq + tb.lengths[b]);
      Tensor alone = model->lm_logits(TokenBatch::from_sequences({seq}, pad));
      for (int64_t t = 0; t < tb.lengths[b]; ++t)
        for (int64_t v = 0; v < V; ++v) {
          float want = alone.data<float>()[t * V + v];
          EXPECT_NEAR(batched.data<float>()[(b * tb.seq + t) * V + v], want, 1e-5 * (1 + std::fabs(want)))
              << "row " << b << " pos " << t;
        }
    }
  }
}

// run_block_range runs the forward's own blocks: the embeddings through
// blocks [0, 1), then [1, L), then ln_f give hidden_states bit for bit, and
// the tap sees each projection's input in the blocks' order (compared with
// what forward_traced keeps, whose adds and GELU run apart: close, not equal).
TEST(ModelForward, BlockRangeIsTheForwardsOwnBlocksAndTapsTheProjectionInputs) {
  const GPT2Config cfg = odd_config();
  const Checkpoint ck = sharpened(cfg, ModelKind::CausalLM, 11);
  auto model = GPT2Model::from_checkpoint(ck);
  const TokenBatch tb = TokenBatch::from_sequences({{5, 17, 96, 0, 33, 2}, {3, 90, 44, 61, 7, 1}}, 0);
  const int64_t rows = tb.batch * tb.seq, C = cfg.n_embd;
  std::vector<int64_t> positions;
  for (int64_t r = 0; r < rows; ++r) positions.push_back(r % tb.seq);
  Tensor x = Tensor::empty({rows, C}, DType::F32);
  ops::embedding(Tensor::from_vector(tb.ids, {rows}), Tensor::from_vector(positions, {rows}),
                 ck.get_f32("wte.weight"), ck.get_f32("wpe.weight"), x);

  std::vector<std::pair<size_t, Tensor>> seen;
  model->run_block_range(x, tb.batch, tb.seq, 0, 1,
                         [&](size_t m, const Tensor& in) { seen.emplace_back(m, in.clone()); });
  ForwardTrace trace;
  model->forward_traced(tb, TraceDropout{}, trace);
  const LayerTrace& a = trace.layers[0];
  Tensor gelu = a.fc_pre.clone();
  ops::gelu_erf(gelu);  // odd_config's activation
  const Tensor* want[] = {&a.ln1, &a.attn, &a.ln2, &gelu};
  ASSERT_EQ(seen.size(), 4u);
  for (size_t m = 0; m < seen.size(); ++m) {
    EXPECT_EQ(seen[m].first, m);
    ASSERT_EQ(seen[m].second.shape(), (Shape{rows, want[m]->dim(-1)})) << m;
    int bad = 0;
    for (int64_t i = 0; i < want[m]->numel(); ++i) {
      const float w = want[m]->data<float>()[i];
      bad += !(std::fabs(seen[m].second.data<float>()[i] - w) <= 1e-4f * (1 + std::fabs(w)));
    }
    EXPECT_EQ(bad, 0) << "projection " << m;
  }

  model->run_block_range(x, tb.batch, tb.seq, 1, cfg.n_layer);
  ops::layer_norm(x, ck.get_f32("ln_f.weight"), ck.get_f32("ln_f.bias"), static_cast<float>(cfg.layer_norm_epsilon),
                  x);
  const Tensor h = model->hidden_states(tb);
  ASSERT_EQ(h.numel(), x.numel());
  EXPECT_EQ(std::memcmp(h.raw(), x.raw(), x.nbytes()), 0);

  EXPECT_THROW(model->run_block_range(x, tb.batch, tb.seq, 1, cfg.n_layer + 1), Error);
  EXPECT_THROW(model->run_block_range(x, tb.batch, tb.seq, 2, 1), Error);
  EXPECT_THROW(model->run_block_range(x, tb.batch + 1, tb.seq, 0, 1), Error);  // not [batch · seq, C]
}

TEST(ModelForward, KvCacheIncrementalEqualsFullForward) {
  auto model = GPT2Model::from_checkpoint(sharpened(small_config(), ModelKind::CausalLM, 7));
  const int64_t V = 97;
  TokenBatch full = padded_batch(0);
  Tensor want = model->lm_logits(full);
  // Feed the same padded batch in chunks 5, 1, 3, 2: each chunk's logits must
  // equal the matching positions of the full forward.
  KVCache cache = model->new_cache(full.batch, full.seq);
  int64_t at = 0;
  for (int64_t step : {5, 1, 3, 2}) {
    TokenBatch part;
    part.batch = full.batch;
    part.seq = step;
    for (int64_t b = 0; b < full.batch; ++b) {
      for (int64_t t = 0; t < step; ++t) part.ids.push_back(full.ids[b * full.seq + at + t]);
      // Chunk rows are right-padded too: the real tokens of this chunk (maybe
      // none, for a row that ended earlier), then padding.
      part.lengths.push_back(std::clamp<int64_t>(full.lengths[b] - at, 0, step));
    }
    Tensor got = model->lm_logits(part, &cache);
    // Every position, padded ones included, sees the same keys as in the full forward.
    for (int64_t b = 0; b < full.batch; ++b)
      for (int64_t t = 0; t < step; ++t)
        for (int64_t v = 0; v < V; ++v) {
          float w = want.data<float>()[(b * full.seq + at + t) * V + v];
          EXPECT_NEAR(got.data<float>()[(b * step + t) * V + v], w, 1e-5 * (1 + std::fabs(w)))
              << "row " << b << " pos " << at + t;
        }
    at += step;
  }
  EXPECT_EQ(cache.length, full.seq);
  TokenBatch more{full.batch, 1, std::vector<int32_t>(full.batch, 1), std::vector<int64_t>(full.batch, 1)};
  EXPECT_THROW(model->lm_logits(more, &cache), Error);  // capacity reached
}

TEST(ModelForward, SingleSequenceDecodingEqualsFullForward) {
  auto model = GPT2Model::from_checkpoint(sharpened(odd_config(), ModelKind::CausalLM, 8));
  std::vector<int32_t> seq{9, 8, 7, 60, 61, 62, 3, 3, 3, 90, 1, 2, 44};
  Tensor want = model->lm_logits(TokenBatch::from_sequences({seq}, 0));
  KVCache cache = model->new_cache(1, 20);
  for (size_t t = 0; t < seq.size(); ++t) {
    Tensor got = model->lm_logits(TokenBatch{1, 1, {seq[t]}, {1}}, &cache);
    for (int64_t v = 0; v < 97; ++v) {
      float w = want.data<float>()[t * 97 + v];
      EXPECT_NEAR(got.data<float>()[v], w, 1e-5 * (1 + std::fabs(w))) << "pos " << t;
    }
  }
}

TEST(ModelForward, ClassifierPoolsAtHfPositionAndMatchesNaive) {
  GPT2Config cfg = small_config();
  cfg.id2label = {"a", "b", "c"};
  cfg.pad_token_id = 7;
  Checkpoint ck = sharpened(cfg, ModelKind::SequenceClassification, 9);
  auto model = GPT2Model::from_checkpoint(ck);
  EXPECT_EQ(model->num_labels(), 3);
  // Row 0: ends in pad ids; row 1: a pad id inside the text (HF takes the
  // rightmost non-pad); row 2: only pad ids (argmax of all zeros -> 0).
  TokenBatch tb = TokenBatch::from_sequences({{4, 5, 6}, {7, 8, 7, 9, 7}, {7, 7}}, 7);
  EXPECT_EQ(model->pooled_positions(tb), (std::vector<int64_t>{2, 3, 0}));

  Tensor logits = model->class_logits(tb);
  ASSERT_EQ(logits.shape(), (Shape{3, 3}));
  NaiveGPT2 naive(ck);
  const Vec& score = naive.W("score.weight");
  std::vector<int64_t> pos = model->pooled_positions(tb);
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<int32_t> row(tb.ids.begin() + b * tb.seq, tb.ids.begin() + (b + 1) * tb.seq);
    std::vector<Vec> h = naive.hidden(row, tb.lengths[b]);
    Vec want(3);
    for (int k = 0; k < 3; ++k)
      for (int c = 0; c < 32; ++c) want[k] += h[pos[b]][c] * score[k * 32 + c];
    expect_logits_close(logits.data<float>() + b * 3, want, 2e-5, "class logits row " + std::to_string(b));
  }

  // Without a pad id the last real token is used.
  cfg.pad_token_id.reset();
  auto no_pad = GPT2Model::from_checkpoint(sharpened(cfg, ModelKind::SequenceClassification, 9));
  EXPECT_EQ(no_pad->pooled_positions(tb), (std::vector<int64_t>{2, 4, 1}));

  auto lm = GPT2Model::from_checkpoint(sharpened(small_config(), ModelKind::CausalLM, 9));
  EXPECT_THROW(lm->class_logits(tb), Error);
}

TEST(ModelForward, BadInputsAreErrors) {
  auto model = GPT2Model::from_checkpoint(sharpened(small_config(), ModelKind::CausalLM, 10));
  EXPECT_THROW(model->lm_logits(TokenBatch::from_sequences({{1, 97}}, 0)), Error);  // id >= vocab
  EXPECT_THROW(model->lm_logits(TokenBatch::from_sequences({{-1}}, 0)), Error);
  EXPECT_THROW(model->lm_logits(TokenBatch::from_sequences({std::vector<int32_t>(41, 1)}, 0)), Error);  // > n_positions
  EXPECT_THROW(TokenBatch::from_sequences({{1}, {}}, 0), Error);
  TokenBatch bad_len{1, 3, {1, 2, 3}, {4}};
  EXPECT_THROW(model->lm_logits(bad_len), Error);
  EXPECT_THROW(model->new_cache(1, 41), Error);

  GPT2Config cfg = small_config();
  cfg.n_head = 5;  // does not divide 32
  Checkpoint ck = sharpened(small_config(), ModelKind::CausalLM, 10);
  ck.config = cfg;
  EXPECT_THROW(GPT2Model::from_checkpoint(ck), Error);
  ck.config = small_config();
  ck.config.activation_function = "swish";
  EXPECT_THROW(GPT2Model::from_checkpoint(ck), Error);
  ck.config = small_config();
  ck.tensors.erase("h.1.mlp.c_fc.bias");
  EXPECT_THROW(GPT2Model::from_checkpoint(ck), Error);
}

TEST(ModelForward, ClassifyBucketsCoverEveryLengthWithinThePositions) {
  // The GPU pads one text to these lengths (gpt2_graphs.cpp).
  EXPECT_EQ(classify_bucket(1, 1024), 8);
  EXPECT_EQ(classify_bucket(8, 1024), 8);
  EXPECT_EQ(classify_bucket(9, 1024), 32);
  EXPECT_EQ(classify_bucket(51, 1024), 64);
  EXPECT_EQ(classify_bucket(256, 1024), 256);
  EXPECT_EQ(classify_bucket(257, 1024), 384);
  EXPECT_EQ(classify_bucket(1000, 1024), 1024);
  EXPECT_EQ(classify_bucket(100, 100), 100);  // never past n_positions
  EXPECT_EQ(classify_bucket(5, 6), 6);
  for (int64_t npos : {1, 7, 100, 1024})
    for (int64_t n = 1; n <= npos; ++n) {
      const int64_t b = classify_bucket(n, npos);
      ASSERT_GE(b, n);
      ASSERT_LE(b, npos);
    }
}
