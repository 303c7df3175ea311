// The training pass of TrainableGPT2: a forward that keeps what the backward
// needs (per layer: block input, LayerNorm outputs, qkv, attention
// probabilities, attention output, mid-block residual, MLP pre-activation),
// the heads with their cross entropy, and the backward through every op of
// ops/ops_backward.h. Buffers come from ops::scratch, whose cache reuses the
// previous step's blocks.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/ops.h"
#include "ops/ops_backward.h"
#include "train/trainable_impl.h"

namespace gpt2q::train {

namespace {

// Dropout sites: 0 after the embedding; per layer l, 1 + 3l on the attention
// probabilities, 2 + 3l after attn.c_proj, 3 + 3l after mlp.c_proj.
uint64_t site_embd() { return 0; }
uint64_t site_attn(int64_t l) { return 1 + 3 * static_cast<uint64_t>(l); }
uint64_t site_attn_resid(int64_t l) { return 2 + 3 * static_cast<uint64_t>(l); }
uint64_t site_mlp_resid(int64_t l) { return 3 + 3 * static_cast<uint64_t>(l); }

struct LayerActs {
  Tensor x_in, ln1, qkv, probs, dropped, attn, x_mid, ln2, fc_pre;  // dropped: with attention dropout only
};

struct Pass {
  int64_t B = 0, T = 0, rows = 0;
  Tensor ids, positions, key_mask;
  std::vector<LayerActs> layers;
  Tensor x_final, h;  // residual stream before ln_f, and after it
  // Dropout probabilities (0 in eval mode) and the counters of the masks.
  float p_embd = 0, p_attn = 0, p_resid = 0;
  DropoutContext drop;
  uint64_t key(uint64_t site) const { return ops::dropout_key(drop.seed, drop.step, drop.micro, site); }
};

int64_t row_length(const TokenBatch& tb, int64_t b) { return tb.lengths.empty() ? tb.seq : tb.lengths[b]; }

// GPT2Model's checks of a batch (ids, lengths; pooled_positions runs them)
// plus the position limit.
void check_batch(const ModelState& m, const TokenBatch& tb) {
  m.view_model->pooled_positions(tb);
  if (tb.seq > m.config.n_positions)
    fail("sequence of {} positions exceeds the model's n_positions = {}", tb.seq, m.config.n_positions);
}

void copy_into(const Tensor& src, Tensor& dst) { std::memcpy(dst.raw(), src.raw(), src.nbytes()); }

void activation(const ModelState& m, Tensor& x) {
  if (m.gelu_exact) {
    ops::gelu_erf(x);
  } else {
    ops::gelu_new(x);
  }
}

// Forward through ln_f. keep = false (no backward follows) reuses one set of
// layer buffers for every layer.
Pass forward(const ModelState& m, const TokenBatch& tb, const DropoutContext& drop, bool keep) {
  const GPT2Config& c = m.config;
  check_batch(m, tb);
  Pass ps;
  ps.B = tb.batch;
  ps.T = tb.seq;
  ps.rows = ps.B * ps.T;
  ps.drop = drop;
  if (drop.enabled) {
    ps.p_embd = static_cast<float>(c.embd_pdrop);
    ps.p_attn = static_cast<float>(c.attn_pdrop);
    ps.p_resid = static_cast<float>(c.resid_pdrop);
  }
  const int64_t B = ps.B, T = ps.T, C = c.n_embd, H = c.n_head, I = c.inner();
  const float eps = static_cast<float>(c.layer_norm_epsilon);
  ps.ids = Tensor::from_vector(tb.ids, {ps.rows});
  ps.positions = Tensor::empty({ps.rows}, DType::I64);
  for (int64_t r = 0; r < ps.rows; ++r) ps.positions.data<int64_t>()[r] = r % T;
  bool padded = false;
  for (int64_t b = 0; b < B; ++b) padded |= row_length(tb, b) < T;
  if (padded) {
    ps.key_mask = Tensor::empty({B, T}, DType::U8);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < row_length(tb, b); ++t) ps.key_mask.data<uint8_t>()[b * T + t] = 1;
  }

  Tensor x = ops::scratch({B, T, C});
  ops::embedding(ps.ids, ps.positions, m.value(m.wte), m.value(m.wpe), x);
  ops::dropout(x, ps.p_embd, ps.key(site_embd()));

  Tensor projected = ops::scratch({B, T, C});
  Tensor act = ops::scratch({B, T, I});
  ps.layers.resize(keep ? c.n_layer : std::min<int64_t>(c.n_layer, 1));
  for (LayerActs& a : ps.layers) {
    a.ln1 = ops::scratch({B, T, C});
    a.qkv = ops::scratch({B, T, 3 * C});
    a.probs = ops::scratch({B, H, T, T});
    if (ps.p_attn > 0.0f) a.dropped = ops::scratch({B, H, T, T});
    a.attn = ops::scratch({B, T, C});
    a.x_mid = ops::scratch({B, T, C});
    a.ln2 = ops::scratch({B, T, C});
    a.fc_pre = ops::scratch({B, T, I});
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const BlockParams& bp = m.blocks[l];
    LayerActs& a = ps.layers[keep ? l : 0];
    a.x_in = x;
    ops::layer_norm(x, m.value(bp.ln_1_w), m.value(bp.ln_1_b), eps, a.ln1);
    ops::linear(a.ln1, m.value(bp.c_attn_w), m.value(bp.c_attn_b), a.qkv);
    ops::AttentionTrainParams ap{H, c.attention_scale(l), ps.p_attn, ps.key(site_attn(l))};
    ops::causal_self_attention_train(a.qkv, ps.key_mask, ap, a.probs, a.dropped, a.attn);
    ops::linear(a.attn, m.value(bp.attn_proj_w), m.value(bp.attn_proj_b), projected);
    ops::dropout(projected, ps.p_resid, ps.key(site_attn_resid(l)));
    copy_into(x, a.x_mid);
    ops::add_inplace(a.x_mid, projected);

    ops::layer_norm(a.x_mid, m.value(bp.ln_2_w), m.value(bp.ln_2_b), eps, a.ln2);
    ops::linear(a.ln2, m.value(bp.c_fc_w), m.value(bp.c_fc_b), a.fc_pre);
    copy_into(a.fc_pre, act);
    activation(m, act);
    ops::linear(act, m.value(bp.mlp_proj_w), m.value(bp.mlp_proj_b), projected);
    ops::dropout(projected, ps.p_resid, ps.key(site_mlp_resid(l)));
    // The next block's input is a new buffer: this block's x_in and x_mid
    // stay as the backward needs them.
    x = keep ? ops::scratch({B, T, C}) : x;
    copy_into(a.x_mid, x);
    ops::add_inplace(x, projected);
  }
  ps.x_final = x;
  ps.h = ops::scratch({B, T, C});
  ops::layer_norm(x, m.value(m.ln_f_w), m.value(m.ln_f_b), eps, ps.h);
  return ps;
}

// The scored rows of the LM loss: position t of row b predicts ids[b, t + 1]
// for t + 1 < lengths[b] (HF's shift; padding is label -100).
struct LmTargets {
  std::vector<int64_t> rows;
  std::vector<int32_t> targets;
};

LmTargets lm_targets(const TokenBatch& tb) {
  LmTargets out;
  for (int64_t b = 0; b < tb.batch; ++b)
    for (int64_t t = 0; t + 1 < row_length(tb, b); ++t) {
      out.rows.push_back(b * tb.seq + t);
      out.targets.push_back(tb.ids[b * tb.seq + t + 1]);
    }
  return out;
}

// Rows per chunk of the LM head: logits of [chunk, vocab] at most ~64 MB.
int64_t lm_chunk_rows(int64_t vocab) { return std::max<int64_t>(16, (int64_t{1} << 24) / vocab); }

// LM head + cross entropy. With dh defined, also the backward: dh rows of
// the scored positions get their gradient and wte's gradient is accumulated.
LossValue lm_head(ModelState& m, const TokenBatch& tb, const Pass& ps, float grad_scale, Tensor* dh) {
  const LmTargets lt = lm_targets(tb);
  LossValue lv;
  lv.count = static_cast<int64_t>(lt.rows.size());
  if (lv.count == 0) return lv;
  const int64_t C = m.config.n_embd, V = m.config.vocab_size, n = lv.count;
  const int64_t chunk = std::min(n, lm_chunk_rows(V));
  const float scale = grad_scale / static_cast<float>(n);
  const float* h = ps.h.data<float>();
  Tensor hc = ops::scratch({chunk, C}), logits = ops::scratch({chunk, V}), dhc = ops::scratch({chunk, C});
  double total = 0.0;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    Tensor hv = hc.slice_rows(0, len), lv_ = logits.slice_rows(0, len), dv = dhc.slice_rows(0, len);
    for (int64_t i = 0; i < len; ++i) std::memcpy(hv.data<float>() + i * C, h + lt.rows[begin + i] * C, sizeof(float) * C);
    ops::matmul_nt(hv, m.value(m.wte), lv_);
    std::vector<int32_t> tg(lt.targets.begin() + begin, lt.targets.begin() + begin + len);
    total += ops::cross_entropy(lv_, Tensor::from_vector(tg, {len}), scale, lv_);
    if (!dh) continue;
    ops::matmul_nt_backward(hv, m.value(m.wte), lv_, dv, m.grad(m.wte));
    float* d = dh->data<float>();
    for (int64_t i = 0; i < len; ++i) std::memcpy(d + lt.rows[begin + i] * C, dv.data<float>() + i * C, sizeof(float) * C);
  }
  lv.loss = total / static_cast<double>(n);
  return lv;
}

// Final hidden states at the classifier's positions: [B, C].
Tensor pooled_hidden(const ModelState& m, const TokenBatch& tb, const Pass& ps, const std::vector<int64_t>& pos) {
  const int64_t C = m.config.n_embd;
  Tensor pooled = Tensor::empty({tb.batch, C}, DType::F32);
  for (int64_t b = 0; b < tb.batch; ++b)
    std::memcpy(pooled.data<float>() + b * C, ps.h.data<float>() + (b * tb.seq + pos[b]) * C, sizeof(float) * C);
  return pooled;
}

LossValue classify_head(ModelState& m, const TokenBatch& tb, std::span<const int32_t> labels, const Pass& ps,
                        float grad_scale, Tensor* dh) {
  if (static_cast<int64_t>(labels.size()) != tb.batch)
    fail("classification: {} labels for a batch of {}", labels.size(), tb.batch);
  for (int32_t y : labels)
    if (y < 0 || y >= m.num_labels) fail("classification: label {} outside [0, {})", y, m.num_labels);
  const int64_t B = tb.batch, C = m.config.n_embd;
  const std::vector<int64_t> pos = m.view_model->pooled_positions(tb);
  Tensor pooled = pooled_hidden(m, tb, ps, pos);
  Tensor logits = Tensor::empty({B, m.num_labels}, DType::F32);
  ops::matmul_nt(pooled, m.value(m.score), logits);
  std::vector<int32_t> tg(labels.begin(), labels.end());
  LossValue lv;
  lv.count = B;
  lv.loss = ops::cross_entropy(logits, Tensor::from_vector(tg, {B}), grad_scale / static_cast<float>(B), logits) /
            static_cast<double>(B);
  if (dh) {
    Tensor dpooled = Tensor::empty({B, C}, DType::F32);
    ops::matmul_nt_backward(pooled, m.value(m.score), logits, dpooled, m.grad(m.score));
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(dh->data<float>() + (b * tb.seq + pos[b]) * C, dpooled.data<float>() + b * C, sizeof(float) * C);
  }
  return lv;
}

void backward(ModelState& m, const Pass& ps, const Tensor& dh) {
  const GPT2Config& c = m.config;
  const int64_t B = ps.B, T = ps.T, C = c.n_embd, H = c.n_head, I = c.inner();
  const float eps = static_cast<float>(c.layer_norm_epsilon);
  Tensor dx = Tensor::empty({B, T, C}, DType::F32);  // the residual stream's gradient
  ops::layer_norm_backward(ps.x_final, m.value(m.ln_f_w), eps, dh, dx, m.grad(m.ln_f_w), m.grad(m.ln_f_b));
  Tensor dproj = ops::scratch({B, T, C}), dsmall = ops::scratch({B, T, C});
  Tensor act = ops::scratch({B, T, I}), dact = ops::scratch({B, T, I}), dqkv = ops::scratch({B, T, 3 * C});
  for (int64_t l = c.n_layer - 1; l >= 0; --l) {
    const BlockParams& bp = m.blocks[l];
    const LayerActs& a = ps.layers[l];
    // x_out = x_mid + dropout(mlp.c_proj(act(c_fc(ln_2(x_mid)))))
    copy_into(dx, dproj);
    ops::dropout(dproj, ps.p_resid, ps.key(site_mlp_resid(l)));
    copy_into(a.fc_pre, act);
    activation(m, act);
    ops::linear_backward(act, m.value(bp.mlp_proj_w), dproj, dact, m.grad(bp.mlp_proj_w), m.grad(bp.mlp_proj_b));
    if (m.gelu_exact) {
      ops::gelu_erf_backward(a.fc_pre, dact);
    } else {
      ops::gelu_new_backward(a.fc_pre, dact);
    }
    ops::linear_backward(a.ln2, m.value(bp.c_fc_w), dact, dsmall, m.grad(bp.c_fc_w), m.grad(bp.c_fc_b));
    ops::layer_norm_backward(a.x_mid, m.value(bp.ln_2_w), eps, dsmall, dx, m.grad(bp.ln_2_w), m.grad(bp.ln_2_b));
    // x_mid = x_in + dropout(attn.c_proj(attention(c_attn(ln_1(x_in)))))
    copy_into(dx, dproj);
    ops::dropout(dproj, ps.p_resid, ps.key(site_attn_resid(l)));
    ops::linear_backward(a.attn, m.value(bp.attn_proj_w), dproj, dsmall, m.grad(bp.attn_proj_w),
                         m.grad(bp.attn_proj_b));
    ops::AttentionTrainParams ap{H, c.attention_scale(l), ps.p_attn, ps.key(site_attn(l))};
    ops::causal_self_attention_backward(a.qkv, ps.key_mask, a.probs, a.dropped, ap, dsmall, dqkv);
    ops::linear_backward(a.ln1, m.value(bp.c_attn_w), dqkv, dsmall, m.grad(bp.c_attn_w), m.grad(bp.c_attn_b));
    ops::layer_norm_backward(a.x_in, m.value(bp.ln_1_w), eps, dsmall, dx, m.grad(bp.ln_1_w), m.grad(bp.ln_1_b));
  }
  ops::dropout(dx, ps.p_embd, ps.key(site_embd()));
  ops::embedding_backward(ps.ids, ps.positions, dx, m.grad(m.wte), m.grad(m.wpe));
}

void check_labels_for_task(const ModelState& m, std::span<const int32_t> labels) {
  if (m.task == Task::LM && !labels.empty()) fail("language-model training takes no labels ({} given)", labels.size());
}

}  // namespace

LossValue TrainableGPT2::forward_backward(const TokenBatch& batch, std::span<const int32_t> labels,
                                          const DropoutContext& dropout, float grad_scale) {
  Impl& m = *impl_;
  check_labels_for_task(m, labels);
  if (m.task == Task::Classify && static_cast<int64_t>(labels.size()) != batch.batch)
    fail("classification: {} labels for a batch of {}", labels.size(), batch.batch);
  const Pass ps = forward(m, batch, dropout, /*keep=*/true);
  Tensor dh = Tensor::empty({ps.B, ps.T, m.config.n_embd}, DType::F32);  // zero where no loss reads
  const LossValue lv = m.task == Task::Classify ? classify_head(m, batch, labels, ps, grad_scale, &dh)
                                                : lm_head(m, batch, ps, grad_scale, &dh);
  if (lv.count > 0) backward(m, ps, dh);
  return lv;
}

LossValue TrainableGPT2::loss(const TokenBatch& batch, std::span<const int32_t> labels) const {
  Impl& m = *impl_;  // the heads take a mutable Impl for the backward; nothing is written without dh
  check_labels_for_task(m, labels);
  const Pass ps = forward(m, batch, DropoutContext{}, /*keep=*/false);
  return m.task == Task::Classify ? classify_head(m, batch, labels, ps, 1.0f, nullptr)
                                  : lm_head(m, batch, ps, 1.0f, nullptr);
}

Tensor TrainableGPT2::logits(const TokenBatch& batch) const {
  const Impl& m = *impl_;
  const Pass ps = forward(m, batch, DropoutContext{}, /*keep=*/false);
  const int64_t B = ps.B, T = ps.T, C = m.config.n_embd;
  if (m.task == Task::LM) {
    Tensor out = Tensor::empty({B, T, m.config.vocab_size}, DType::F32);
    ops::matmul_nt(ps.h.view({B * T, C}), m.value(m.wte), out);
    return out;
  }
  Tensor pooled = pooled_hidden(m, batch, ps, m.view_model->pooled_positions(batch));
  Tensor out = Tensor::empty({B, m.num_labels}, DType::F32);
  ops::matmul_nt(pooled, m.value(m.score), out);
  return out;
}

}  // namespace gpt2q::train
