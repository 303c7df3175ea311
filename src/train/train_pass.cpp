// The training pass of TrainableGPT2: the model's forward with a trace
// (GPT2Model::forward_traced: per layer the block input, LayerNorm outputs,
// qkv, attention probabilities, attention output, mid-block residual, MLP
// pre-activation), the heads with their cross entropy, and the backward
// through every op of ops/ops_backward.h. Buffers come from ops::scratch, whose cache reuses the
// previous step's blocks. Everything lives on the model's device: the batch's
// ids, positions and targets are host tensors that the ops check and upload,
// and rows move between buffers by gathers (ops::gather_rows), never by
// host pointers, so the same code runs on the CPU and on CUDA.
#include <algorithm>
#include <cmath>

#include "core/device_memory.h"
#include "ops/ops.h"
#include "ops/ops_backward.h"
#include "train/trainable_impl.h"

namespace gpt2q::train {

namespace {

// The forward's record (model/gpt2_trace.h), read by the heads and the backward.
using Pass = ForwardTrace;

void copy_into(const Tensor& src, Tensor& dst) {
  copy_bytes(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
}

// Row r of `out` [n_rows, C] is row i of `rows` [k, C] where rows_at[i] = r,
// and zero where no row goes: a gather from `rows` with one zero row
// appended (so the inverse of gathering rows_at needs no scatter op).
void place_rows(const Tensor& rows_plus_zero, const std::vector<int64_t>& rows_at, Tensor& out) {
  const int64_t k = static_cast<int64_t>(rows_at.size()), n = out.numel() / out.dim(-1);
  std::vector<int64_t> from(static_cast<size_t>(n), k);  // row k of rows_plus_zero is zero
  for (int64_t i = 0; i < k; ++i) from[static_cast<size_t>(rows_at[i])] = i;
  ops::gather_rows(rows_plus_zero, Tensor::from_vector(from, {n}), out);
}

void activation(const ModelState& m, Tensor& x) {
  if (m.gelu_exact) {
    ops::gelu_erf(x);
  } else {
    ops::gelu_new(x);
  }
}

// The training forward: the model's own (GPT2Model::forward_traced), with
// the dropout of `drop` when it is on.
Pass forward(const ModelState& m, const TokenBatch& tb, const DropoutContext& drop) {
  TraceDropout d;
  if (drop.enabled) {
    d.p_embd = static_cast<float>(m.config.embd_pdrop);
    d.p_attn = static_cast<float>(m.config.attn_pdrop);
    d.p_resid = static_cast<float>(m.config.resid_pdrop);
  }
  d.seed = drop.seed;
  d.step = drop.step;
  d.micro = drop.micro;
  Pass ps;
  m.view_model->forward_traced(tb, d, ps);
  return ps;
}

// Eval mode, no backward: the inference forward's hidden states, for the heads.
Pass eval_forward(const ModelState& m, const TokenBatch& tb) {
  Pass ps;
  ps.B = tb.batch;
  ps.T = tb.seq;
  ps.rows = ps.B * ps.T;
  ps.h = m.view_model->hidden_states(tb).view({ps.B, ps.T, m.config.n_embd});
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
    for (int64_t t = 0; t + 1 < tb.length(b); ++t) {
      out.rows.push_back(b * tb.seq + t);
      out.targets.push_back(tb.ids[b * tb.seq + t + 1]);
    }
  return out;
}

// Rows per chunk of the LM head: logits of [chunk, vocab] at most ~64 MB on
// the CPU (cache-friendly), ~1 GB on a GPU (products large enough to fill it).
int64_t lm_chunk_rows(int64_t vocab, Device dev) {
  const int64_t bytes = dev == Device::CPU ? int64_t{1} << 26 : int64_t{1} << 30;
  return std::max<int64_t>(16, bytes / 4 / vocab);
}

// The loss of row losses computed chunk by chunk: each chunk's rows summed in
// order, then the chunks' sums in order (one read from the device per step).
double sum_by_chunks(const Tensor& row_loss, int64_t chunk) {
  const Tensor host = to_device(row_loss, Device::CPU);
  const auto l = host.span<const double>();
  double total = 0.0;
  for (size_t begin = 0; begin < l.size(); begin += static_cast<size_t>(chunk)) {
    double s = 0.0;
    for (size_t i = begin; i < std::min(l.size(), begin + static_cast<size_t>(chunk)); ++i) s += l[i];
    total += s;
  }
  return total;
}

// LM head + cross entropy. With dh defined, also the backward: dh rows of
// the scored positions get their gradient and wte's gradient is accumulated.
LossValue lm_head(ModelState& m, const TokenBatch& tb, const Pass& ps, float grad_scale, Tensor* dh) {
  const LmTargets lt = lm_targets(tb);
  LossValue lv;
  lv.count = static_cast<int64_t>(lt.rows.size());
  if (lv.count == 0) return lv;
  const int64_t C = m.config.n_embd, V = m.config.vocab_size, n = lv.count;
  const int64_t chunk = std::min(n, lm_chunk_rows(V, m.device));
  const float scale = grad_scale / static_cast<float>(n);
  const Tensor h = ps.h.view({ps.rows, C});
  Tensor hc = ops::scratch({chunk, C}, DType::F32, m.device), logits = ops::scratch({chunk, V}, DType::F32, m.device);
  // The scored rows' gradients, then a zero row: dh is gathered from it.
  Tensor dscored = dh ? Tensor::empty({n + 1, C}, DType::F32, m.device) : Tensor();
  Tensor row_loss = ops::scratch({n}, DType::F64, m.device);
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    Tensor hv = hc.slice_rows(0, len), lv_ = logits.slice_rows(0, len);
    const std::vector<int64_t> rows(lt.rows.begin() + begin, lt.rows.begin() + begin + len);
    ops::gather_rows(h, Tensor::from_vector(rows, {len}), hv);
    ops::matmul_nt(hv, m.value(m.wte), lv_);
    const std::vector<int32_t> tg(lt.targets.begin() + begin, lt.targets.begin() + begin + len);
    Tensor chunk_loss = row_loss.slice_rows(begin, begin + len);
    ops::cross_entropy_rows(lv_, Tensor::from_vector(tg, {len}), scale, lv_, chunk_loss);
    if (!dh) continue;
    Tensor dv = dscored.slice_rows(begin, begin + len);
    ops::matmul_nt_backward(hv, m.value(m.wte), lv_, dv, m.grad(m.wte));
  }
  if (dh) place_rows(dscored, lt.rows, *dh);
  lv.loss = sum_by_chunks(row_loss, chunk) / static_cast<double>(n);
  return lv;
}

// Final hidden states at the classifier's positions: [B, C].
Tensor pooled_hidden(const ModelState& m, const TokenBatch& tb, const Pass& ps, const std::vector<int64_t>& rows) {
  Tensor pooled = ops::scratch({tb.batch, m.config.n_embd}, DType::F32, m.device);
  ops::gather_rows(ps.h.view({ps.rows, m.config.n_embd}), Tensor::from_vector(rows, {tb.batch}), pooled);
  return pooled;
}

// The rows of the pooled positions in [B * T, C].
std::vector<int64_t> pooled_rows(const ModelState& m, const TokenBatch& tb) {
  std::vector<int64_t> rows = pooled_positions(m.config, tb);
  for (int64_t b = 0; b < tb.batch; ++b) rows[b] += b * tb.seq;
  return rows;
}

LossValue classify_head(ModelState& m, const TokenBatch& tb, std::span<const int32_t> labels, const Pass& ps,
                        float grad_scale, Tensor* dh) {
  if (static_cast<int64_t>(labels.size()) != tb.batch)
    fail("classification: {} labels for a batch of {}", labels.size(), tb.batch);
  for (int32_t y : labels)
    if (y < 0 || y >= m.num_labels) fail("classification: label {} outside [0, {})", y, m.num_labels);
  const int64_t B = tb.batch, C = m.config.n_embd;
  const std::vector<int64_t> rows = pooled_rows(m, tb);
  Tensor pooled = pooled_hidden(m, tb, ps, rows);
  Tensor logits = ops::scratch({B, m.num_labels}, DType::F32, m.device);
  ops::matmul_nt(pooled, m.value(m.score), logits);
  std::vector<int32_t> tg(labels.begin(), labels.end());
  LossValue lv;
  lv.count = B;
  lv.loss = ops::cross_entropy(logits, Tensor::from_vector(tg, {B}), grad_scale / static_cast<float>(B), logits) /
            static_cast<double>(B);
  if (dh) {
    Tensor dpooled = Tensor::empty({B + 1, C}, DType::F32, m.device);  // row B stays zero
    Tensor d = dpooled.slice_rows(0, B);
    ops::matmul_nt_backward(pooled, m.value(m.score), logits, d, m.grad(m.score));
    place_rows(dpooled, rows, *dh);
  }
  return lv;
}

void backward(ModelState& m, const Pass& ps, const Tensor& dh) {
  const GPT2Config& c = m.config;
  const int64_t B = ps.B, T = ps.T, C = c.n_embd, H = c.n_head, I = c.inner();
  const float eps = static_cast<float>(c.layer_norm_epsilon);
  Tensor dx = Tensor::empty({B, T, C}, DType::F32, m.device);  // the residual stream's gradient (accumulated)
  ops::layer_norm_backward(ps.x_final, m.value(m.ln_f_w), eps, dh, dx, m.grad(m.ln_f_w), m.grad(m.ln_f_b));
  auto buffer = [&m](const Shape& shape) { return ops::scratch(shape, DType::F32, m.device); };
  Tensor dproj = buffer({B, T, C}), dsmall = buffer({B, T, C});
  Tensor act = buffer({B, T, I}), dact = buffer({B, T, I}), dqkv = buffer({B, T, 3 * C});
  for (int64_t l = c.n_layer - 1; l >= 0; --l) {
    const BlockParams& bp = m.blocks[l];
    const LayerTrace& a = ps.layers[l];
    // x_out = x_mid + dropout(mlp.c_proj(act(c_fc(ln_2(x_mid)))))
    copy_into(dx, dproj);
    ops::dropout(dproj, ps.dropout.p_resid, ps.dropout.key(dropout_site_mlp_resid(l)));
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
    ops::dropout(dproj, ps.dropout.p_resid, ps.dropout.key(dropout_site_attn_resid(l)));
    ops::linear_backward(a.attn, m.value(bp.attn_proj_w), dproj, dsmall, m.grad(bp.attn_proj_w),
                         m.grad(bp.attn_proj_b));
    ops::AttentionTrainParams ap{H, c.attention_scale(l), ps.dropout.p_attn, ps.dropout.key(dropout_site_attn(l))};
    ops::causal_self_attention_backward(a.qkv, ps.key_mask, a.probs, a.dropped, a.attn, ap, dsmall, dqkv);
    ops::linear_backward(a.ln1, m.value(bp.c_attn_w), dqkv, dsmall, m.grad(bp.c_attn_w), m.grad(bp.c_attn_b));
    ops::layer_norm_backward(a.x_in, m.value(bp.ln_1_w), eps, dsmall, dx, m.grad(bp.ln_1_w), m.grad(bp.ln_1_b));
  }
  ops::dropout(dx, ps.dropout.p_embd, ps.dropout.key(dropout_site_embd()));
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
  const ops::Bf16ProductsScope products(m.precision == TrainPrecision::bf16);
  const Pass ps = forward(m, batch, dropout);
  // Written in full by the head (zero where no loss reads).
  Tensor dh = ops::scratch({ps.B, ps.T, m.config.n_embd}, DType::F32, m.device);
  const LossValue lv = m.task == Task::Classify ? classify_head(m, batch, labels, ps, grad_scale, &dh)
                                                : lm_head(m, batch, ps, grad_scale, &dh);
  if (lv.count > 0) backward(m, ps, dh);
  return lv;
}

LossValue TrainableGPT2::loss(const TokenBatch& batch, std::span<const int32_t> labels) const {
  Impl& m = *impl_;  // the heads take a mutable Impl for the backward; nothing is written without dh
  check_labels_for_task(m, labels);
  const Pass ps = eval_forward(m, batch);
  return m.task == Task::Classify ? classify_head(m, batch, labels, ps, 1.0f, nullptr)
                                  : lm_head(m, batch, ps, 1.0f, nullptr);
}

Tensor TrainableGPT2::logits(const TokenBatch& batch) const {
  const Impl& m = *impl_;
  const Pass ps = eval_forward(m, batch);
  const int64_t B = ps.B, T = ps.T, C = m.config.n_embd;
  if (m.task == Task::LM) {
    Tensor out = Tensor::empty({B, T, m.config.vocab_size}, DType::F32, m.device);
    ops::matmul_nt(ps.h.view({B * T, C}), m.value(m.wte), out);
    return out;
  }
  Tensor pooled = pooled_hidden(m, batch, ps, pooled_rows(m, batch));
  Tensor out = Tensor::empty({B, m.num_labels}, DType::F32, m.device);
  ops::matmul_nt(pooled, m.value(m.score), out);
  return out;
}

}  // namespace gpt2q::train
