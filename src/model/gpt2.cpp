// GPT2Model: weights from a Checkpoint, and the fp32 forward pass with
// transformers' semantics (see gpt2.h and /work/shared/REFERENCE.md).
#include "model/gpt2.h"

#include <cmath>

#include <fmt/format.h>

#include "core/device_memory.h"
#include "core/half.h"
#include "layers/linear_factory.h"
#include "model/gpt2_graphs.h"
#include "ops/ops.h"

namespace gpt2q {

TokenBatch TokenBatch::from_sequences(const std::vector<std::vector<int32_t>>& seqs, int32_t pad_id) {
  if (seqs.empty()) fail("token batch: no sequences");
  TokenBatch tb;
  tb.batch = static_cast<int64_t>(seqs.size());
  for (size_t b = 0; b < seqs.size(); ++b) {
    if (seqs[b].empty()) fail("token batch: sequence {} is empty", b);
    tb.seq = std::max<int64_t>(tb.seq, static_cast<int64_t>(seqs[b].size()));
  }
  tb.ids.assign(static_cast<size_t>(tb.batch * tb.seq), pad_id);
  for (size_t b = 0; b < seqs.size(); ++b) {
    std::copy(seqs[b].begin(), seqs[b].end(), tb.ids.begin() + static_cast<int64_t>(b) * tb.seq);
    tb.lengths.push_back(static_cast<int64_t>(seqs[b].size()));
  }
  return tb;
}

namespace {

// LayerNorm parameters as fp32: F32 stays a (zero-copy) view, F16 / BF16 are
// converted once (the matrices stay as stored: embedding_table.h, linear_factory.h).
Tensor weight_f32(const Checkpoint& ck, const std::string& name, const Shape& shape) {
  auto it = ck.tensors.find(name);
  if (it == ck.tensors.end()) fail("{}: missing tensor {}", ck.dir.string(), name);
  const Tensor& t = it->second;
  if (t.shape() != shape)
    fail("{}: tensor {} has shape {}, the config implies {}", ck.dir.string(), name, shape_str(t.shape()),
         shape_str(shape));
  switch (t.dtype()) {
    case DType::F32:
      return ck.quantized() ? t.clone() : t;  // a quantized model keeps no view of its file
    case DType::F16:
    case DType::BF16: {
      Tensor out = Tensor::empty(shape, DType::F32);
      const uint16_t* src = t.data<uint16_t>();
      float* dst = out.data<float>();
      const int64_t n = t.numel();
      const bool bf16 = t.dtype() == DType::BF16;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16 ? bf16_to_float(src[i]) : half_to_float(src[i]);
      return out;
    }
    default:
      fail("{}: tensor {} has dtype {}; GPT-2 weights must be F32, F16 or BF16", ck.dir.string(), name,
           dtype_name(t.dtype()));
  }
}

// A continuation chunk (cache already filled) may hold rows with no real
// token, e.g. a sequence that finished earlier in a batch: their queries
// still see the row's earlier keys.
void check_batch(const TokenBatch& tb, bool allow_empty_rows = false) {
  if (tb.batch <= 0 || tb.seq <= 0) fail("token batch: empty ({} x {})", tb.batch, tb.seq);
  if (static_cast<int64_t>(tb.ids.size()) != tb.batch * tb.seq)
    fail("token batch: {} ids for {} x {}", tb.ids.size(), tb.batch, tb.seq);
  if (!tb.lengths.empty() && static_cast<int64_t>(tb.lengths.size()) != tb.batch)
    fail("token batch: {} lengths for {} rows", tb.lengths.size(), tb.batch);
  const int64_t min_len = allow_empty_rows ? 0 : 1;
  for (size_t b = 0; b < tb.lengths.size(); ++b)
    if (tb.lengths[b] < min_len || tb.lengths[b] > tb.seq)
      fail("token batch: row {} has length {}, outside {}..{}", b, tb.lengths[b], min_len, tb.seq);
}

}  // namespace

namespace {

// About what the weights of `ck` take on `placement`'s device: each stored
// tensor's bytes, dense float ones in a 16-bit compute dtype at 2 bytes.
size_t placed_bytes(const Checkpoint& ck, const Placement& placement) {
  size_t n = 0;
  for (const auto& [name, t] : ck.tensors) {
    const bool dense = t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16;
    const bool halved = dense && placement.compute != DType::F32 && t.ndim() == 2;
    n += halved ? static_cast<size_t>(t.numel()) * 2 : t.nbytes();
  }
  return n;
}

}  // namespace

std::unique_ptr<GPT2Model> GPT2Model::from_checkpoint(const Checkpoint& ck, const Placement& placement) {
  if (placement.device != Device::CPU) {
    // A model that does not fit is one error before anything is allocated.
    const size_t need = placed_bytes(ck, placement);
    const DeviceMemoryStats st = device_memory_stats(placement.device);
    if (need > st.free)
      fail("{}: the model needs about {} on {}, {} of {} free", ck.dir.string(), format_bytes(need),
           device_name(placement.device), format_bytes(st.free), format_bytes(st.total));
    try {
      return build(ck, placement);
    } catch (...) {
      // Whatever was placed before the failure is freed by now; give the
      // pool's cache back too, so that nothing stays allocated.
      try {
        release_cached_device_memory(placement.device);
      } catch (...) {
        // A faulted device: the original error is the one to report.
      }
      throw;
    }
  }
  return build(ck, placement);
}

std::unique_ptr<GPT2Model> GPT2Model::build(const Checkpoint& ck, const Placement& placement) {
  auto m = std::make_unique<GPT2Model>();
  m->placement_ = placement;
  const GPT2Config& cfg = ck.config;
  const std::string src = (ck.dir / "config.json").string();
  if (cfg.n_embd <= 0 || cfg.n_head <= 0 || cfg.n_embd % cfg.n_head != 0)
    fail("{}: n_head ({}) must divide n_embd ({})", src, cfg.n_head, cfg.n_embd);
  if (cfg.n_layer < 0 || cfg.vocab_size <= 0 || cfg.n_positions <= 0 || cfg.inner() <= 0)
    fail("{}: n_layer, vocab_size, n_positions and n_inner must be positive", src);
  const std::string& act = cfg.activation_function;
  if (act == "gelu") {
    m->gelu_exact_ = true;
  } else if (act != "gelu_new" && act != "gelu_pytorch_tanh" && act != "gelu_fast") {
    fail("{}: activation_function \"{}\" is not supported (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu)", src, act);
  }
  m->config_ = cfg;
  m->kind_ = ck.kind;
  const int64_t C = cfg.n_embd, V = cfg.vocab_size;
  // LayerNorm parameters are fp32 on every device.
  auto ln = [&](const std::string& name) { return to_device(weight_f32(ck, name, {C}), placement.device); };
  m->wte_ = make_embedding_table(ck, "wte.weight", V, C, placement);
  m->wpe_ = make_embedding_table(ck, "wpe.weight", cfg.n_positions, C, placement);
  for (int64_t l = 0; l < cfg.n_layer; ++l)
    m->blocks_.push_back(BlockWeights::assemble(fmt::format("h.{}.", l), ln, [&](const std::string& module) {
      return make_linear(ck, module, placement);
    }));
  m->ln_f_w_ = ln("ln_f.weight");
  m->ln_f_b_ = ln("ln_f.bias");
  if (ck.has("lm_head.weight")) m->lm_head_ = make_embedding_table(ck, "lm_head.weight", V, C, placement);
  if (ck.kind == ModelKind::SequenceClassification) {
    if (cfg.num_labels() <= 0) fail("{}: a sequence classifier needs id2label / num_labels", src);
    m->score_ = make_embedding_table(ck, "score.weight", cfg.num_labels(), C, placement);
  }
  return m;
}

Tensor GPT2Model::as_activations(const Tensor& x) const {
  const DType act = placement_.activations();
  if (x.dtype() == act) return x;
  Tensor y = ops::scratch(x.shape(), act, x.device());
  ops::cast(x, y);
  return y;
}

BlockWeights BlockWeights::assemble(const std::string& p, const std::function<Tensor(const std::string&)>& ln,
                                   const std::function<std::unique_ptr<Linear>(const std::string&)>& linear) {
  BlockWeights bw;
  bw.ln_1_w = ln(p + "ln_1.weight");
  bw.ln_1_b = ln(p + "ln_1.bias");
  bw.ln_2_w = ln(p + "ln_2.weight");
  bw.ln_2_b = ln(p + "ln_2.bias");
  for (size_t m = 0; m < kProjections.size(); ++m) bw.projection(m) = linear(p + kProjections[m]);
  return bw;
}

std::unique_ptr<Linear>& BlockWeights::projection(size_t m) {
  switch (m) {
    case 0:
      return c_attn;
    case 1:
      return attn_c_proj;
    case 2:
      return c_fc;
    case 3:
      return mlp_c_proj;
    default:
      fail("block projection {} does not exist (0..3)", m);
  }
}

GPT2Model::GPT2Model() = default;
GPT2Model::~GPT2Model() = default;  // here, where ClassifyGraph is complete (gpt2_graphs.h)

int64_t GPT2Model::num_labels() const { return score_ ? score_->rows() : 0; }

KVCache GPT2Model::new_cache(int64_t batch, int64_t capacity) const {
  if (batch <= 0) fail("KV cache: batch must be positive, got {}", batch);
  if (capacity <= 0 || capacity > config_.n_positions)
    fail("KV cache: capacity {} outside 1..{} (n_positions)", capacity, config_.n_positions);
  KVCache c;
  c.batch = batch;
  c.capacity = capacity;
  const Shape shape{batch, config_.n_head, capacity, config_.head_dim()};
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    c.k.push_back(Tensor::empty(shape, placement_.activations(), placement_.device));
    c.v.push_back(Tensor::empty(shape, placement_.activations(), placement_.device));
  }
  c.key_valid = Tensor::empty({batch, capacity}, DType::U8);
  c.key_valid_device =
      placement_.device == Device::CPU ? c.key_valid : Tensor::empty({batch, capacity}, DType::U8, placement_.device);
  c.kernel_state = ops::make_cache_kernel_state(batch, config_.n_head, config_.head_dim(), capacity,
                                                placement_.activations(), placement_.device);
  return c;
}

void GPT2Model::check_tokens(const std::vector<int32_t>& ids, const std::vector<int64_t>& positions) const {
  GPT2Q_CHECK(ids.size() == positions.size(), "{} ids but {} positions", ids.size(), positions.size());
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r] < 0 || ids[r] >= wte_->rows())
      fail("token id {} is out of range for a vocabulary of {}", ids[r], wte_->rows());
    if (positions[r] < 0 || positions[r] >= wpe_->rows())
      fail("position {} is out of range: the model has n_positions = {}", positions[r], wpe_->rows());
  }
}

std::pair<ops::CheckedIndices, ops::CheckedIndices> GPT2Model::checked_tokens(
    const std::vector<int32_t>& ids, const std::vector<int64_t>& positions) const {
  check_tokens(ids, positions);
  const std::vector<int64_t> ids64(ids.begin(), ids.end());
  return {ops::CheckedIndices(ids64, wte_->rows(), placement_.device),
          ops::CheckedIndices(positions, wpe_->rows(), placement_.device)};
}

Tensor GPT2Model::run_blocks(const std::vector<int32_t>& ids, const std::vector<int64_t>& positions,
                             const AttentionFn& attend) const {
  // Ids and positions are checked on the host, then uploaded once.
  const auto [id_idx, pos_idx] = checked_tokens(ids, positions);
  return run_blocks(id_idx, pos_idx, attend);
}

Tensor GPT2Model::run_blocks(const ops::CheckedIndices& ids, const ops::CheckedIndices& positions,
                             const AttentionFn& attend, ForwardTrace* trace) const {
  const int64_t rows = ids.size(), C = config_.n_embd;
  // The residual stream, fp32 on every device.
  Tensor x = ops::scratch({rows, C}, DType::F32, placement_.device);
  embed_tokens(*wte_, *wpe_, ids, positions, x);
  if (trace) ops::dropout(x, trace->dropout.p_embd, trace->dropout.key(dropout_site_embd()));
  run_layers(x, 0, config_.n_layer, attend, trace, nullptr);
  const float eps = static_cast<float>(config_.layer_norm_epsilon);
  if (!trace) {
    ops::layer_norm(x, ln_f_w_, ln_f_b_, eps, x);
    return x;
  }
  trace->x_final = x;
  Tensor h = ops::scratch({rows, C}, DType::F32, placement_.device);
  ops::layer_norm(x, ln_f_w_, ln_f_b_, eps, h);
  return h;
}

void GPT2Model::run_layers(Tensor& x, int64_t first, int64_t last, const AttentionFn& attend, ForwardTrace* trace,
                           const ProjectionTap* tap) const {
  const int64_t rows = x.dim(0), C = config_.n_embd, I = config_.inner();
  const Device dev = placement_.device;
  const DType act = placement_.activations();
  auto buffer = [&](int64_t cols, DType dtype) { return ops::scratch({rows, cols}, dtype, dev); };
  // Inference: every buffer below is written in full before it is read and
  // serves every layer; the linears read and write the placement's
  // activation dtype; the residual adds go into x (fp32) inside the
  // projections' products, and GELU into c_fc's. Traced (training): each
  // layer keeps its own buffers and a new residual stream after each add,
  // and the adds and the activation run apart, for dropout and for the
  // pre-activation the backward reads.
  LayerTrace shared;
  if (!trace) {
    shared.ln1 = buffer(C, act);
    shared.qkv = buffer(3 * C, act);
    shared.attn = buffer(C, act);
    shared.fc_pre = buffer(I, act);
    shared.ln2 = shared.ln1;
  } else {
    trace->layers.assign(static_cast<size_t>(config_.n_layer), LayerTrace{});
  }
  Tensor projected, activated;  // traced only
  if (trace) {
    projected = buffer(C, DType::F32);
    activated = buffer(I, DType::F32);
  }
  // x_out = x_in + dropout(proj(in)): into x itself (inference), or into a
  // new stream buffer that leaves x_in as it was.
  auto residual = [&](const Linear& proj, const Tensor& in, Tensor& stream, uint64_t site) {
    if (!trace) return proj.forward(in, stream, {.accumulate = true});
    proj.forward(in, projected);
    ops::dropout(projected, trace->dropout.p_resid, trace->dropout.key(site));
    Tensor next = buffer(C, DType::F32);
    copy_bytes(next.raw(), dev, stream.raw(), dev, stream.nbytes());
    ops::add_inplace(next, projected);
    stream = next;
  };
  const ops::Activation gelu = gelu_exact_ ? ops::Activation::gelu_erf : ops::Activation::gelu_new;
  const float eps = static_cast<float>(config_.layer_norm_epsilon);
  for (int64_t l = first; l < last; ++l) {
    const BlockWeights& bw = blocks_[l];
    LayerTrace& a = trace ? trace->layers[l] : shared;
    if (trace) {
      a.x_in = x;
      a.ln1 = buffer(C, act);
      a.qkv = buffer(3 * C, act);
      a.attn = buffer(C, act);
      a.ln2 = buffer(C, act);
      a.fc_pre = buffer(I, act);
    }
    ops::layer_norm(x, bw.ln_1_w, bw.ln_1_b, eps, a.ln1);
    if (tap) (*tap)(0, a.ln1);
    bw.c_attn->forward(a.ln1, a.qkv);
    attend(l, a.qkv, a.attn);
    if (tap) (*tap)(1, a.attn);
    residual(*bw.attn_c_proj, a.attn, x, dropout_site_attn_resid(l));
    if (trace) a.x_mid = x;

    ops::layer_norm(x, bw.ln_2_w, bw.ln_2_b, eps, a.ln2);
    if (tap) (*tap)(2, a.ln2);
    if (!trace) {
      bw.c_fc->forward(a.ln2, a.fc_pre, {.activation = gelu});
      if (tap) (*tap)(3, a.fc_pre);
      residual(*bw.mlp_c_proj, a.fc_pre, x, dropout_site_mlp_resid(l));
      continue;
    }
    bw.c_fc->forward(a.ln2, a.fc_pre);
    copy_bytes(activated.raw(), dev, a.fc_pre.raw(), dev, a.fc_pre.nbytes());
    if (gelu_exact_) {
      ops::gelu_erf(activated);
    } else {
      ops::gelu_new(activated);
    }
    if (tap) (*tap)(3, activated);
    residual(*bw.mlp_c_proj, activated, x, dropout_site_mlp_resid(l));
  }
}

void GPT2Model::run_block_range(Tensor& x, int64_t batch, int64_t seq, int64_t first, int64_t last,
                                const ProjectionTap& tap) const {
  const int64_t C = config_.n_embd, H = config_.n_head;
  const Device dev = placement_.device;
  if (first < 0 || first > last || last > config_.n_layer)
    fail("blocks [{}, {}) are not among the model's {} layers", first, last, config_.n_layer);
  if (batch <= 0 || seq <= 0 || seq > config_.n_positions)
    fail("block range: {} sequences of {} tokens (1..n_positions = {} each)", batch, seq, config_.n_positions);
  if (x.dtype() != DType::F32 || x.device() != dev || x.shape() != Shape{batch * seq, C})
    fail("block range: the residual stream is {} {} on {}, should be F32 [{}, {}] on {}", dtype_name(x.dtype()),
         shape_str(x.shape()), device_name(x.device()), batch * seq, C, device_name(dev));
  // hidden_states' attention of a batch with no padding.
  ops::SequenceLayout layout;
  if (dev != Device::CPU)
    layout = ops::SequenceLayout::padded(std::vector<int64_t>(static_cast<size_t>(batch), seq), seq, dev);
  const AttentionFn attend = [&](int64_t l, const Tensor& qkv, Tensor& attended) {
    if (dev != Device::CPU) return ops::causal_self_attention(qkv, layout, H, config_.attention_scale(l), attended);
    Tensor out = attended.view({batch, seq, C});
    ops::causal_self_attention(qkv.view({batch, seq, 3 * C}), Tensor(), H, config_.attention_scale(l), out);
  };
  run_layers(x, first, last, attend, nullptr, tap ? &tap : nullptr);
}

bool GPT2Model::packs_sequences() const {
  // On a GPU with 16-bit activations the attention runs per sequence on
  // tensor cores, so a batch need not be padded: its texts are packed end
  // to end and every row is a real token. Elsewhere batches stay padded.
  return placement_.device == Device::CUDA && placement_.activations() != DType::F32;
}

Tensor GPT2Model::hidden_states(const TokenBatch& tb, KVCache* cache) const {
  check_batch(tb, cache && cache->length > 0);
  const int64_t B = tb.batch, T = tb.seq, C = config_.n_embd, H = config_.n_head, rows = B * T;
  const int64_t past = cache ? cache->length : 0;
  if (cache) {
    if (cache->batch != B) fail("KV cache: made for batch {}, used with batch {}", cache->batch, B);
    if (static_cast<int64_t>(cache->k.size()) != config_.n_layer || !cache->key_valid.defined())
      fail("KV cache: not made by this model (use GPT2Model::new_cache)");
    if (past + T > cache->capacity)
      fail("KV cache: {} cached + {} new positions exceed its capacity {}", past, T, cache->capacity);
  }
  if (past + T > config_.n_positions)
    fail("sequence of {} positions exceeds the model's n_positions = {}", past + T, config_.n_positions);
  const Device dev = placement_.device;
  std::vector<int64_t> positions(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) positions[r] = past + r % T;
  std::vector<int64_t> lengths(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) lengths[b] = tb.length(b);

  Tensor x;
  if (cache) {
    // Which keys may be attended: a padded key stays masked in later steps.
    uint8_t* valid = cache->key_valid.data<uint8_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) valid[b * cache->capacity + past + t] = t < lengths[b] ? 1 : 0;
    const Tensor& key_mask = cache->key_valid_device;
    if (dev != Device::CPU)
      copy_bytes(key_mask.raw(), dev, cache->key_valid.raw(), Device::CPU, cache->key_valid.nbytes());
    if (cache->kernel_state.past.defined()) {
      const auto p = static_cast<int32_t>(past);
      copy_bytes(cache->kernel_state.past.raw(), dev, &p, Device::CPU, sizeof(p));
    }
    x = run_blocks(tb.ids, positions, [&](int64_t l, const Tensor& qkv, Tensor& attended) {
      Tensor out = attended.view({B, T, C});
      ops::causal_self_attention_cached(qkv.view({B, T, 3 * C}), cache->k[l], cache->v[l], past, key_mask, H,
                                        config_.attention_scale(l), out, cache->kernel_state);
    });
    cache->length += T;
  } else if (dev != Device::CPU) {
    const ops::SequenceLayout layout = ops::SequenceLayout::padded(lengths, T, dev);
    x = run_blocks(tb.ids, positions, [&](int64_t l, const Tensor& qkv, Tensor& attended) {
      ops::causal_self_attention(qkv, layout, H, config_.attention_scale(l), attended);
    });
  } else {
    // Right padding masks positions >= length.
    const Tensor key_mask = padding_key_mask(tb);
    x = run_blocks(tb.ids, positions, [&](int64_t l, const Tensor& qkv, Tensor& attended) {
      Tensor out = attended.view({B, T, C});
      ops::causal_self_attention(qkv.view({B, T, 3 * C}), key_mask, H, config_.attention_scale(l), out);
    });
  }
  return x.view({B, T, C});
}

Tensor GPT2Model::lm_logits_from_hidden(const Tensor& hidden_rows) const {
  const EmbeddingTable& head = lm_head_ ? *lm_head_ : *wte_;
  const int64_t C = config_.n_embd;
  if (hidden_rows.ndim() < 1 || hidden_rows.dim(-1) != C)
    fail("lm logits: hidden rows {} do not have n_embd = {} features", shape_str(hidden_rows.shape()), C);
  const int64_t rows = hidden_rows.numel() / C;
  Tensor logits = ops::scratch({rows, head.rows()}, DType::F32, placement_.device);
  head.matmul_nt(as_activations(to_device(hidden_rows, placement_.device).view({rows, C})), logits);
  return logits;
}

Tensor GPT2Model::lm_logits(const TokenBatch& tb, KVCache* cache) const {
  Tensor h = hidden_states(tb, cache);
  return lm_logits_from_hidden(h).view({tb.batch, tb.seq, config_.vocab_size});
}

void check_token_batch(const TokenBatch& tb) { check_batch(tb); }

Tensor padding_key_mask(const TokenBatch& tb) {
  bool padded = false;
  for (int64_t b = 0; b < tb.batch; ++b) padded |= tb.length(b) < tb.seq;
  if (!padded) return Tensor();
  Tensor mask = Tensor::empty({tb.batch, tb.seq}, DType::U8);
  for (int64_t b = 0; b < tb.batch; ++b)
    for (int64_t t = 0; t < tb.length(b); ++t) mask.data<uint8_t>()[b * tb.seq + t] = 1;
  return mask;
}

std::vector<int64_t> GPT2Model::pooled_positions(const TokenBatch& tb) const {
  return gpt2q::pooled_positions(config_, tb);
}

std::vector<int64_t> pooled_positions(const GPT2Config& config, const TokenBatch& tb) {
  check_batch(tb);
  std::vector<int64_t> pos(static_cast<size_t>(tb.batch));
  for (int64_t b = 0; b < tb.batch; ++b) {
    if (!config.pad_token_id) {
      pos[b] = tb.length(b) - 1;
      continue;
    }
    // HF: argmax_t of t * (ids[t] != pad), the first maximum on ties.
    const int64_t pad = *config.pad_token_id;
    int64_t best = 0, best_value = 0;
    for (int64_t t = 0; t < tb.seq; ++t) {
      const int64_t value = tb.ids[b * tb.seq + t] != pad ? t : 0;
      if (value > best_value) {
        best = t;
        best_value = value;
      }
    }
    pos[b] = best;
  }
  return pos;
}

Tensor GPT2Model::class_logits(const TokenBatch& tb) const {
  if (!is_classifier()) fail("class logits: the model is not a GPT2ForSequenceClassification checkpoint");
  const std::vector<int64_t> pos = pooled_positions(tb);
  if (tb.batch == 1 && pads_one_text()) return class_logits_one_text(tb, pos[0]);
  const int64_t C = config_.n_embd;
  Tensor h;
  std::vector<int64_t> rows(static_cast<size_t>(tb.batch));
  if (packs_sequences()) {
    // Each text's real tokens only, end to end; the classifier reads the
    // pooled position of each (HF's: the last non-pad token, so never a pad).
    std::vector<int32_t> ids;
    std::vector<int64_t> positions, lengths;
    for (int64_t b = 0; b < tb.batch; ++b) {
      const int64_t n = tb.length(b);
      if (pos[b] >= n) fail("class logits: row {} pools position {} beyond its {} tokens", b, pos[b], n);
      rows[b] = static_cast<int64_t>(ids.size()) + pos[b];
      ids.insert(ids.end(), tb.ids.begin() + b * tb.seq, tb.ids.begin() + b * tb.seq + n);
      for (int64_t t = 0; t < n; ++t) positions.push_back(t);
      lengths.push_back(n);
    }
    check_batch(tb);
    const ops::SequenceLayout layout = ops::SequenceLayout::packed(lengths, placement_.device);
    const int64_t H = config_.n_head;
    h = run_blocks(ids, positions, [&](int64_t l, const Tensor& qkv, Tensor& attended) {
      ops::causal_self_attention(qkv, layout, H, config_.attention_scale(l), attended);
    });
  } else {
    h = hidden_states(tb).view({tb.batch * tb.seq, C});
    for (int64_t b = 0; b < tb.batch; ++b) rows[b] = b * tb.seq + pos[b];
  }
  // The pooled rows, gathered where the hidden states are.
  Tensor pooled = ops::scratch({tb.batch, C}, DType::F32, placement_.device);
  ops::gather_rows(h, Tensor::from_vector(rows, {tb.batch}), pooled);
  Tensor logits = ops::scratch({tb.batch, num_labels()}, DType::F32, placement_.device);
  score_->matmul_nt(as_activations(pooled), logits);
  return logits;
}

std::vector<std::pair<std::string, size_t>> GPT2Model::weight_bytes() const {
  size_t blocks = 0;
  for (const BlockWeights& bw : blocks_) {
    blocks += bw.ln_1_w.nbytes() + bw.ln_1_b.nbytes() + bw.ln_2_w.nbytes() + bw.ln_2_b.nbytes();
    blocks += bw.c_attn->bytes() + bw.attn_c_proj->bytes() + bw.c_fc->bytes() + bw.mlp_c_proj->bytes();
  }
  std::vector<std::pair<std::string, size_t>> out{{"wte", wte_->bytes()},
                                                   {"wpe", wpe_->bytes()},
                                                   {"blocks", blocks},
                                                   {"ln_f", ln_f_w_.nbytes() + ln_f_b_.nbytes()}};
  if (score_) out.emplace_back("score", score_->bytes());
  if (lm_head_) out.emplace_back("lm_head", lm_head_->bytes());
  return out;
}

size_t GPT2Model::total_weight_bytes() const {
  size_t total = 0;
  for (const auto& [name, bytes] : weight_bytes()) total += bytes;
  return total;
}

}  // namespace gpt2q
