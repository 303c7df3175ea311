// GPT2Model's side of training: the traced forward (run_blocks with a
// ForwardTrace, gpt2_trace.h) and a model built over the training
// parameters themselves.
#include <fmt/format.h>

#include "core/device_memory.h"
#include "layers/dense_linear.h"
#include "model/gpt2.h"
#include "ops/ops_backward.h"

namespace gpt2q {

std::unique_ptr<GPT2Model> GPT2Model::over_tensors(const GPT2Config& config, ModelKind kind,
                                                   const std::map<std::string, Tensor>& tensors, Device device) {
  auto get = [&](const std::string& name) -> const Tensor& {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail("training model: missing parameter {}", name);
    if (it->second.dtype() != DType::F32 || it->second.device() != device)
      fail("training model: parameter {} must be F32 on {}", name, device_name(device));
    return it->second;
  };
  auto m = std::make_unique<GPT2Model>();
  m->placement_ = Placement{device, DType::F32};
  m->config_ = config;
  m->kind_ = kind;
  m->gelu_exact_ = config.activation_function == "gelu";
  m->wte_ = std::make_unique<EmbeddingTable>(get("wte.weight"), m->placement_);
  m->wpe_ = std::make_unique<EmbeddingTable>(get("wpe.weight"), m->placement_);
  auto linear = [&](const std::string& module) -> std::unique_ptr<Linear> {
    return DenseLinear::over_in_out(get(module + ".weight"), get(module + ".bias"), m->placement_);
  };
  for (int64_t l = 0; l < config.n_layer; ++l)
    m->blocks_.push_back(BlockWeights::assemble(fmt::format("h.{}.", l), get, linear));
  m->ln_f_w_ = get("ln_f.weight");
  m->ln_f_b_ = get("ln_f.bias");
  if (kind == ModelKind::SequenceClassification)
    m->score_ = std::make_unique<EmbeddingTable>(get("score.weight"), m->placement_);
  return m;
}

void GPT2Model::forward_traced(const TokenBatch& tb, const TraceDropout& dropout, ForwardTrace& trace) const {
  if (placement_.activations() != DType::F32)
    fail("training forward: the model computes in {}; training runs fp32", dtype_name(placement_.activations()));
  check_token_batch(tb);
  if (tb.seq > config_.n_positions)
    fail("sequence of {} positions exceeds the model's n_positions = {}", tb.seq, config_.n_positions);
  const int64_t B = tb.batch, T = tb.seq, C = config_.n_embd, H = config_.n_head, rows = B * T;
  const Device dev = placement_.device;
  trace = ForwardTrace{};
  trace.dropout = dropout;
  trace.B = B;
  trace.T = T;
  trace.rows = rows;
  std::vector<int64_t> positions(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) positions[r] = r % T;
  trace.ids = Tensor::from_vector(tb.ids, {rows});
  trace.positions = Tensor::from_vector(positions, {rows});
  // Right padding masks positions >= length, as hidden_states does on the CPU.
  if (const Tensor mask = padding_key_mask(tb); mask.defined()) trace.key_mask = to_device(mask, dev);
  const auto [ids, pos] = checked_tokens(tb.ids, positions);
  Tensor h = run_blocks(
      ids, pos,
      [&](int64_t l, const Tensor& qkv, Tensor& attended) {
        LayerTrace& a = trace.layers[l];
        // The probabilities [B, H, T, T], or under the flash kernels only each row's log-sum-exp.
        a.probs = ops::scratch(ops::attention_train_saved_shape(dev, B, H, T, C / H), DType::F32, dev);
        // Off the CPU the backward regenerates the dropped probabilities from their counters.
        if (dropout.p_attn > 0.0f && dev == Device::CPU) a.dropped = ops::scratch({B, H, T, T}, DType::F32, dev);
        Tensor out = attended.view({B, T, C});
        const ops::AttentionTrainParams ap{H, config_.attention_scale(l), dropout.p_attn,
                                           dropout.key(dropout_site_attn(l))};
        ops::causal_self_attention_train(qkv.view({B, T, 3 * C}), trace.key_mask, ap, a.probs, a.dropped, out);
      },
      &trace);
  // [B, T, features], as the backward ops (the attention's) take them.
  auto bt = [&](Tensor& t) {
    if (t.defined()) t = t.view({B, T, t.dim(-1)});
  };
  for (LayerTrace& a : trace.layers)
    for (Tensor* t : {&a.x_in, &a.ln1, &a.qkv, &a.attn, &a.x_mid, &a.ln2, &a.fc_pre}) bt(*t);
  bt(trace.x_final);
  trace.h = h.view({B, T, C});
}

}  // namespace gpt2q
