#pragma once
// The GPT-2 forward pass in fp32, with transformers' semantics: gelu_new,
// LayerNorm eps from config, causal attention + padding mask (right padding),
// tied LM head, and GPT2ForSequenceClassification's score head.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/tensor.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "layers/embedding_table.h"
#include "layers/linear.h"
#include "layers/placement.h"
#include "model/gpt2_trace.h"
#include "ops/ops.h"

namespace gpt2q {

// Right-padded token ids: row b holds lengths[b] real tokens, then padding.
// lengths[b] is 1..seq; 0 is allowed only for a chunk that continues a
// filled KV cache (a row with nothing new). Empty `lengths` = no padding.
struct TokenBatch {
  int64_t batch = 0, seq = 0;
  std::vector<int32_t> ids;       // [batch * seq]
  std::vector<int64_t> lengths;   // [batch], 1..seq
  // Real tokens of row b (seq when no lengths are given).
  int64_t length(int64_t b) const { return lengths.empty() ? seq : lengths[static_cast<size_t>(b)]; }
  // Pads each sequence on the right to the longest with `pad_id`.
  static TokenBatch from_sequences(const std::vector<std::vector<int32_t>>& seqs, int32_t pad_id);
};

// Keys and values of past positions, per layer, for incremental decoding.
// Positions continue from `length` (HF: position_ids = past + arange), and a
// padded key stays masked in later steps (HF: the attention mask of all
// calls, concatenated).
// The cache lives where the model does (k and v in its activation dtype);
// key_valid is kept on the host and uploaded with each step's batch.
struct DecodeGraph;  // gpt2_graphs.cpp

struct KVCache {
  int64_t batch = 0, capacity = 0, length = 0;  // positions filled so far
  std::vector<Tensor> k, v;                     // per layer [batch, n_head, capacity, head_dim]
  Tensor key_valid;                             // U8 [batch, capacity] on the host: 1 = real token
  Tensor key_valid_device;                      // its copy on the model's device (key_valid on the CPU)
  ops::CacheKernelState kernel_state;           // CUDA: the decode kernels' device state (ops.h)
  std::shared_ptr<DecodeGraph> decode_graph;    // CUDA: decode_step's captured graph, made on first use
};

struct BlockWeights {
  Tensor ln_1_w, ln_1_b, ln_2_w, ln_2_b;  // [C]
  std::unique_ptr<Linear> c_attn, attn_c_proj, c_fc, mlp_c_proj;

  // The projections' module names in the order a block runs them: the
  // index of projection() and of GPT2Model::ProjectionTap.
  static constexpr std::array<const char*, 4> kProjections = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                              "mlp.c_proj"};
  // Projection m (0..3, kProjections' order), to read or to replace.
  std::unique_ptr<Linear>& projection(size_t m);

  // Block `prefix` ("h.3.") from its LayerNorm parameters (`ln`, given the
  // tensor name) and its projections (`linear`, given the module name).
  static BlockWeights assemble(const std::string& prefix, const std::function<Tensor(const std::string&)>& ln,
                               const std::function<std::unique_ptr<Linear>(const std::string&)>& linear);
};

struct ClassifyGraph;  // gpt2_graphs.cpp

// The checks every forward makes of a batch (ids count, lengths 1..seq),
// each failure an Error.
void check_token_batch(const TokenBatch& batch);
// The attention's key mask of a right-padded batch: U8 [batch, seq] on the
// host, 1 for a real token; undefined when no row is padded.
Tensor padding_key_mask(const TokenBatch& batch);
// Which position of each row a GPT2ForSequenceClassification with `config`
// reads (see GPT2Model::class_logits); checks the batch first.
std::vector<int64_t> pooled_positions(const GPT2Config& config, const TokenBatch& batch);

class GPT2Model {
 public:
  GPT2Model();
  ~GPT2Model();
  // Builds from a loaded checkpoint. wte, wpe, the heads and the block
  // projections are held as stored: fp32 and 16-bit weights as zero-copy
  // views of the mapping (16-bit ones converted to fp32 per product:
  // layers/embedding_table.h, layers/dense_linear.h), a quantized checkpoint's
  // packed (layers/linear_factory.h) and, like its 16-bit ones, copied so that
  // the model holds no view of its file. Biases and LayerNorm parameters are
  // held in fp32 (16-bit ones converted once).
  //
  // `placement` chooses the device and the compute dtype once: every weight
  // moves there (converted to the compute dtype where the placement asks),
  // and every forward runs there. Outputs (hidden states, logits) are
  // tensors on that device; move them with to_device to read them.
  static std::unique_ptr<GPT2Model> from_checkpoint(const Checkpoint& ckpt, const Placement& placement = {});
  static std::unique_ptr<GPT2Model> load(const std::filesystem::path& dir, const Placement& placement = {});

  const Placement& placement() const { return placement_; }

  const GPT2Config& config() const { return config_; }
  ModelKind kind() const { return kind_; }
  bool is_classifier() const { return kind_ == ModelKind::SequenceClassification; }
  int64_t num_labels() const;

  // Final hidden states after ln_f: [batch, seq, n_embd]. With a cache, the
  // batch continues from cache->length (positions offset accordingly).
  Tensor hidden_states(const TokenBatch& batch, KVCache* cache = nullptr) const;
  // LM logits [batch, seq, vocab] (tied to wte unless lm_head.weight exists).
  Tensor lm_logits(const TokenBatch& batch, KVCache* cache = nullptr) const;
  // LM logits for some rows of a hidden-state matrix [rows, C] -> [rows, vocab].
  Tensor lm_logits_from_hidden(const Tensor& hidden_rows) const;
  // Classifier logits [batch, num_labels], taken at the last non-pad token
  // (HF: argmax over positions of pos * (ids != pad_token_id); without a pad
  // id, at lengths[b] - 1).
  Tensor class_logits(const TokenBatch& batch) const;

  // LM logits F32 [1, vocab] on the host for one new token `id` of a
  // batch-1 cache (positions continue from cache.length): lm_logits of a
  // [1, 1] batch. On CUDA with 16-bit activations the step is replayed as
  // a captured CUDA graph from the second call on (the same kernels, so
  // the same numbers as without the graph).
  Tensor decode_step(int32_t id, KVCache& cache) const;

  // Which position of each row the classifier reads (see class_logits).
  std::vector<int64_t> pooled_positions(const TokenBatch& batch) const;

  // The forward of a training step (train/train_pass.cpp runs the backward):
  // hidden_states' checks, padding mask and layer sequence, with HF's
  // train-mode dropout and every activation the backward reads kept in
  // `trace` (gpt2_trace.h); trace.h is the result. fp32 activations only
  // (an fp32 placement); the attention keeps its probabilities
  // (ops::causal_self_attention_train).
  void forward_traced(const TokenBatch& batch, const TraceDropout& dropout, ForwardTrace& trace) const;

  // A model whose weights are the given fp32 tensors themselves, not copies
  // (so it sees every in-place update): HF names (wte.weight, h.0.ln_1.weight,
  // h.0.attn.c_attn.weight [in, out], ..., score.weight), all on `device`.
  // The linears keep the Conv1D layout on every device. The training pass's
  // model.
  static std::unique_ptr<GPT2Model> over_tensors(const GPT2Config& config, ModelKind kind,
                                                 const std::map<std::string, Tensor>& tensors, Device device);

  // Sees the input of projection m (BlockWeights::kProjections' order) of
  // each block run, [rows, in] in the activation dtype, before the
  // projection reads it; the buffer is reused once the call returns.
  using ProjectionTap = std::function<void(size_t m, const Tensor& input)>;
  // Blocks [first, last) of the inference forward over a residual stream
  // x [batch · seq, C] (fp32, on the model's device) in place: `batch`
  // sequences of `seq` tokens packed end to end, none padded; no embedding
  // before, no ln_f after. For block-by-block quantization (calib/), which
  // runs one block at a time, taps its projections' inputs, and replaces
  // projections in blocks() between the runs.
  void run_block_range(Tensor& x, int64_t batch, int64_t seq, int64_t first, int64_t last,
                       const ProjectionTap& tap = {}) const;

  // capacity: 1..n_positions positions.
  KVCache new_cache(int64_t batch, int64_t capacity) const;

  // Bytes of weights held, per component ("wte", "wpe", "blocks", "ln_f", "score", "lm_head").
  std::vector<std::pair<std::string, size_t>> weight_bytes() const;
  size_t total_weight_bytes() const;

  // Exposed for quantization (issue 3) and training (issue 5).
  std::vector<BlockWeights>& blocks() { return blocks_; }
  const std::vector<BlockWeights>& blocks() const { return blocks_; }

 private:
  GPT2Config config_;
  ModelKind kind_ = ModelKind::CausalLM;
  Placement placement_;
  Tensor ln_f_w_, ln_f_b_;
  // Kept as the checkpoint stores them (fp32, 16-bit or quantized); lm_head_
  // is null when tied to wte, score_ null unless a classifier.
  std::unique_ptr<EmbeddingTable> wte_, wpe_, lm_head_, score_;
  std::vector<BlockWeights> blocks_;
  bool gelu_exact_ = false;  // activation_function "gelu" (erf) instead of the tanh form
  static std::unique_ptr<GPT2Model> build(const Checkpoint& ck, const Placement& placement);
  // x (fp32 rows) in the placement's activation dtype, for the heads.
  Tensor as_activations(const Tensor& x) const;
  // The blocks and ln_f over token rows (ids and positions on the host)
  // -> x [rows, C] fp32; `attend(layer, qkv [rows, 3C], attended [rows, C])`
  // runs the attention of each layer over the batch's layout.
  using AttentionFn = std::function<void(int64_t layer, const Tensor& qkv, Tensor& attended)>;
  Tensor run_blocks(const std::vector<int32_t>& ids, const std::vector<int64_t>& positions,
                    const AttentionFn& attend) const;
  // The same over ids and positions already checked and on the device: no
  // host work, so that it can be captured as a CUDA graph.
  // With a trace (forward_traced): HF's train-mode dropout, and every
  // activation the backward needs kept in it (gpt2_trace.h); the result is
  // then a new buffer and x stays trace->x_final.
  Tensor run_blocks(const ops::CheckedIndices& ids, const ops::CheckedIndices& positions,
                    const AttentionFn& attend, ForwardTrace* trace = nullptr) const;
  // run_blocks' layers [first, last) over the residual stream x [rows, C]:
  // in place, or traced, each residual add into a new buffer that x then
  // is. `tap` is null for every forward but run_block_range's, so that those
  // run as before, at the price of four pointer tests per layer.
  void run_layers(Tensor& x, int64_t first, int64_t last, const AttentionFn& attend, ForwardTrace* trace,
                  const ProjectionTap* tap) const;
  // Ids and positions checked against wte and wpe (the errors name the
  // token id or the position), on the model's device.
  std::pair<ops::CheckedIndices, ops::CheckedIndices> checked_tokens(const std::vector<int32_t>& ids,
                                                                     const std::vector<int64_t>& positions) const;
  void check_tokens(const std::vector<int32_t>& ids, const std::vector<int64_t>& positions) const;
  // Whether batch-1 classification and decode steps replay CUDA graphs.
  bool replays_graphs() const;
  // Whether class_logits of one text pads it to classify_bucket's length
  // (on CUDA, packed): then it replays a graph per bucket, or with graphs
  // off runs the same padded work eagerly.
  bool pads_one_text() const;
  // class_logits of one text of n tokens pooled at `pooled`, padded.
  Tensor class_logits_one_text(const TokenBatch& tb, int64_t pooled) const;
  // The batch-1 classifications (captured or not), by length bucket.
  mutable std::mutex graphs_mutex_;
  mutable std::map<int64_t, std::unique_ptr<ClassifyGraph>> classify_graphs_;
  // Whether a classification batch runs packed (no padding rows).
  bool packs_sequences() const;
};

// The length one text of n tokens is padded to on the GPU's batch-1
// classification path (gpt2_graphs.cpp says why): 8 up to 8 tokens, then
// multiples of 32 up to 256, then of 128; never beyond n_positions, never
// below n.
int64_t classify_bucket(int64_t n, int64_t n_positions);

struct GenerateOptions {
  int64_t max_new_tokens = 20;
  bool greedy = true;
  float temperature = 1.0f;
  int64_t top_k = 0;  // 0 = whole vocabulary
  uint64_t seed = 0;
  // Stop after the model's eos_token_id (kept as the last id), as
  // transformers' generate and llama.cpp do.
  bool stop_at_eos = true;
};

// Prompt + new ids. Uses the KV cache and computes logits for the last
// position only. Greedy = argmax (lowest index on ties, as torch.argmax).
// Sampling (see model/sampling.h): logits / temperature, keep the top_k
// largest (ties with the k-th kept, as HF's TopKLogitsWarper), softmax,
// one draw from std::mt19937_64(seed) per token. prompt + max_new_tokens
// must fit in n_positions.
std::vector<int32_t> generate(const GPT2Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts);

}  // namespace gpt2q
