// GPT2Model's batch-1 paths as CUDA graphs (gpt2.h: class_logits with one
// text, decode_step). A batch of one runs ~100 kernels of a few
// microseconds each, so launching them costs as much as running them; a
// captured graph launches them all at once. The graph runs exactly the
// kernels of the eager path (run_blocks over checked device indices), so it
// gives the same numbers; only where the inputs come from changes: buffers
// refilled before each replay.
//
// One text is padded at its end to a length bucket (classify_bucket), so
// that a handful of graphs serve every length: a capture costs milliseconds,
// a replay a fraction of one. The padding rows come after the text's, and
// causal attention never lets a row see a later one, so they change nothing
// the pooled row reads (the GEMMs see more rows, which at these sizes costs
// no time). With graphs off the same padded work runs eagerly, so both
// paths give the same bits.
#include <algorithm>

#include <fmt/format.h>

#include "core/device_memory.h"
#include "model/gpt2.h"
#include "model/gpt2_graphs.h"

namespace gpt2q {

namespace {

// Captured classifications kept per model: one per length bucket met, up to
// this many (then all are dropped and captured again as needed).
constexpr size_t kMaxClassifyGraphs = 64;

// Runs `body` through `graph`: eagerly on the first call (which also sets up
// what the body needs on first use: GEMM plans, workspaces), then captured
// and replayed. A body that cannot be captured keeps running eagerly.
template <typename G, typename Body>
void run_through_graph(G& g, const Body& body) {
  if (g.graph.ready()) return g.graph.launch();
  body();
  if (!g.eager && !g.graph.capture(body)) g.eager = true;
}

}  // namespace

bool GPT2Model::replays_graphs() const { return placement_.device == Device::CUDA && packs_sequences() && cuda_graphs_enabled(); }

bool GPT2Model::pads_one_text() const { return placement_.device == Device::CUDA && packs_sequences(); }

int64_t classify_bucket(int64_t n, int64_t n_positions) {
  // Up to 8 rows the linears run as GEMVs (one read of each weight); then
  // steps of 32 rows to 256 (AG News texts average 51 tokens), then of 128.
  const int64_t b = n <= 8 ? 8 : n <= 256 ? (n + 31) / 32 * 32 : (n + 127) / 128 * 128;
  return std::max(n, std::min(b, n_positions));
}

Tensor GPT2Model::class_logits_one_text(const TokenBatch& tb, int64_t pooled) const {
  const int64_t n = tb.lengths.empty() ? tb.seq : tb.lengths[0], C = config_.n_embd;
  if (pooled >= n) fail("class logits: row 0 pools position {} beyond its {} tokens", pooled, n);
  const std::vector<int32_t> ids(tb.ids.begin(), tb.ids.begin() + n);
  std::vector<int64_t> positions(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) positions[t] = t;
  check_tokens(ids, positions);  // the model's errors, before any device work

  // The padded text: the last token repeated at the next positions (valid
  // ids and positions, read by no row of the text).
  const int64_t N = classify_bucket(n, config_.n_positions);
  std::vector<int32_t> padded_ids = ids;
  padded_ids.resize(static_cast<size_t>(N), ids.empty() ? 0 : ids.back());
  std::lock_guard<std::mutex> lock(graphs_mutex_);
  auto it = classify_graphs_.find(N);
  if (it == classify_graphs_.end()) {
    if (classify_graphs_.size() >= kMaxClassifyGraphs) {
      device_synchronize(placement_.device);
      classify_graphs_.clear();
    }
    auto g = std::make_unique<ClassifyGraph>();
    std::vector<int64_t> all_positions(static_cast<size_t>(N));
    for (int64_t t = 0; t < N; ++t) all_positions[t] = t;
    std::tie(g->ids, g->positions) = checked_tokens(padded_ids, all_positions);
    g->pooled_row = ops::CheckedIndices({pooled}, N, placement_.device);
    g->layout = ops::SequenceLayout::packed({N}, placement_.device);
    g->logits = Tensor::empty({1, num_labels()}, DType::F32, placement_.device);
    it = classify_graphs_.emplace(N, std::move(g)).first;
  } else {
    it->second->ids.assign(std::vector<int64_t>(padded_ids.begin(), padded_ids.end()));
    it->second->pooled_row.assign({pooled});
  }
  ClassifyGraph& g = *it->second;
  const int64_t H = config_.n_head;
  const auto body = [&] {
    Tensor h = run_blocks(g.ids, g.positions, [&](int64_t l, const Tensor& qkv, Tensor& attended) {
      ops::causal_self_attention(qkv, g.layout, H, config_.attention_scale(l), attended);
    });
    Tensor row = ops::scratch({1, C}, DType::F32, placement_.device);
    ops::gather_rows(h, g.pooled_row, row);
    score_->matmul_nt(as_activations(row), g.logits);
  };
  if (cuda_graphs_enabled()) run_through_graph(g, body);
  else body();
  // A copy: the next call overwrites the graph's buffer.
  Tensor out = ops::scratch({1, num_labels()}, DType::F32, placement_.device);
  copy_bytes(out.raw(), out.device(), g.logits.raw(), g.logits.device(), g.logits.nbytes());
  return out;
}

Tensor GPT2Model::decode_step(int32_t id, KVCache& cache) const {
  const int64_t C = config_.n_embd, V = config_.vocab_size, past = cache.length;
  if (cache.batch != 1) fail("decode step: the cache holds {} sequences, not 1", cache.batch);
  if (!replays_graphs()) {
    Tensor h = hidden_states(TokenBatch{1, 1, {id}, {1}}, &cache);
    return to_device(lm_logits_from_hidden(h.view({1, C})), Device::CPU);
  }
  if (static_cast<int64_t>(cache.k.size()) != config_.n_layer || !cache.key_valid_device.defined() ||
      !cache.kernel_state.past.defined())
    fail("KV cache: not made by this model (use GPT2Model::new_cache)");
  if (past + 1 > cache.capacity)
    fail("KV cache: {} cached + 1 new position exceed its capacity {}", past, cache.capacity);
  if (past + 1 > config_.n_positions)
    fail("sequence of {} positions exceeds the model's n_positions = {}", past + 1, config_.n_positions);
  check_tokens({id}, {past});

  // The step's inputs, where the graph reads them.
  const Device dev = placement_.device;
  cache.key_valid.data<uint8_t>()[past] = 1;
  copy_bytes(static_cast<uint8_t*>(cache.key_valid_device.raw()) + past, dev, cache.key_valid.data<uint8_t>() + past,
             Device::CPU, 1);
  const auto p32 = static_cast<int32_t>(past);
  copy_bytes(cache.kernel_state.past.raw(), dev, &p32, Device::CPU, sizeof(p32));
  if (!cache.decode_graph) {
    auto g = std::make_shared<DecodeGraph>();
    g->id = ops::CheckedIndices({id}, V, dev);
    g->position = ops::CheckedIndices({past}, config_.n_positions, dev);
    g->logits = Tensor::empty({1, V}, DType::F32, dev);
    cache.decode_graph = std::move(g);
  } else {
    cache.decode_graph->id.assign({id});
    cache.decode_graph->position.assign({past});
  }
  DecodeGraph& g = *cache.decode_graph;
  const int64_t H = config_.n_head;
  const EmbeddingTable& head = lm_head_ ? *lm_head_ : *wte_;
  // `past` is only checked on the host here: the kernels read it from the
  // cache's device state, so a replay serves every later step.
  run_through_graph(g, [&] {
    Tensor x = run_blocks(g.id, g.position, [&](int64_t l, const Tensor& qkv, Tensor& attended) {
      Tensor out = attended.view({1, 1, C});
      ops::causal_self_attention_cached(qkv.view({1, 1, 3 * C}), cache.k[l], cache.v[l], past, cache.key_valid_device,
                                        H, config_.attention_scale(l), out, cache.kernel_state);
    });
    head.matmul_nt(as_activations(x), g.logits);
  });
  cache.length += 1;
  return to_device(g.logits, Device::CPU);
}

}  // namespace gpt2q
