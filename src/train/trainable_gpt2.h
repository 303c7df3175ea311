#pragma once
// A GPT-2 that learns: fp32 parameters under transformers' names, their
// gradients, and a forward pass that keeps what the backward pass needs.
//
// Semantics are transformers' GPT2LMHeadModel / GPT2ForSequenceClassification
// in train() mode:
//   - classification: a `score` head [num_labels, n_embd] (no bias) read at the
//     last non-pad token (GPT2Model::pooled_positions' rule); loss = mean
//     cross entropy over the batch;
//   - language model: logits through the tied wte; loss = mean next-token
//     cross entropy over the real tokens (HF's shift: logits[:, :-1] against
//     ids[:, 1:]; positions past lengths[b] are ignored, like label -100);
//   - dropout (embd_pdrop after the embedding sum, attn_pdrop on the attention
//     probabilities, resid_pdrop after attn.c_proj and mlp.c_proj; classifier:
//     none on the head, as HF) scaled by 1/(1-p) on kept elements.
//
// Every step is an op of ops/ops.h and ops/ops_backward.h (scalar references
// beside them), so the same pass runs on the CPU and on CUDA.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/grad_norm_args.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "model/gpt2.h"

namespace gpt2q::train {

enum class Task { Classify, LM };

struct Parameter {
  std::string name;   // canonical HF name: "wte.weight", "h.0.attn.c_attn.weight", "ln_f.bias", "score.weight"
  Tensor value;       // fp32; Conv1D weights keep HF's [in, out] layout
  Tensor grad;        // same shape; forward_backward accumulates into it
  bool decay = true;  // weight decay applies (not to biases and LayerNorm weights, as HF's Trainer)
  // In a TrainableGPT2, value and grad are views of the model's flat buffers
  // (flat_values(), flat_grads()) at this element offset.
  int64_t offset = 0;
};

// Where a TrainableGPT2's parameters sit in its flat buffers (llm.c's one
// allocation for parameters and one for gradients): the decaying parameters
// first, then the others, each at a multiple of kAlign elements (256 bytes:
// every parameter is aligned for vector loads and cuBLASLt). The optimizer
// mirrors this layout for its moments, so that one AdamW launch per group
// updates everything; the gaps are zero and stay zero.
struct FlatLayout {
  static constexpr int64_t kAlign = 64;
  int64_t decay_end = 0;  // [0, decay_end): weight-decayed parameters (and gaps)
  int64_t total = 0;      // [decay_end, total): the others
};

// Dropout masks come from a counter-based generator: whether element i of
// dropout site `site` is kept at optimizer step `step` is a pure function of
// (seed, step, micro, site, i). A resumed run therefore draws exactly the masks
// an uninterrupted run draws, with no generator state to save but these counters.
struct DropoutContext {
  bool enabled = false;  // false: eval mode (no dropout)
  uint64_t seed = 0;
  uint64_t step = 0;   // optimizer step
  uint64_t micro = 0;  // batch index within the step (gradient accumulation)
};

// The arithmetic of a training step's products (forward and backward):
// fp32 (exact fp32 multiply-adds, the default, the path held to PyTorch's
// fixtures) or bf16 (bf16 operands on the tensor cores with fp32 sums, CUDA
// only; activations, master weights, AdamW state and the loss stay fp32:
// ops::Bf16ProductsScope).
enum class TrainPrecision { fp32, bf16 };
TrainPrecision parse_train_precision(const std::string& name);  // "fp32" | "bf16", else an Error
const char* train_precision_name(TrainPrecision p);

struct LossValue {
  double loss = 0;     // mean over `count` terms
  int64_t count = 0;   // samples (classify) or scored tokens (lm)
};

class TrainableGPT2 {
 public:
  // fp32 copies of a checkpoint's weights (16-bit converted; quantized ones
  // are an Error). Classify on a checkpoint without score.weight adds a new
  // head initialised as HF does (normal(0, 0.02), drawn from `seed`).
  // `device`: where parameters, gradients and every step of the pass live
  // (fp32 on every device).
  static TrainableGPT2 from_checkpoint(const Checkpoint& ckpt, Task task, int64_t num_labels, uint64_t seed,
                                       Device device = Device::CPU);
  // A fresh model with HF's _init_weights: Linear/Conv1D and embeddings
  // normal(0, initializer_range = 0.02), c_proj weights normal(0, 0.02 /
  // sqrt(2 n_layer)), biases 0, LayerNorm 1 / 0. Seeded, portable generator.
  static TrainableGPT2 init(const GPT2Config& config, Task task, int64_t num_labels, uint64_t seed,
                            Device device = Device::CPU);

  TrainableGPT2(TrainableGPT2&&) noexcept;
  TrainableGPT2& operator=(TrainableGPT2&&) noexcept;
  ~TrainableGPT2();

  const GPT2Config& config() const;  // id2label set for Classify
  Task task() const;
  ModelKind kind() const;            // CausalLM or SequenceClassification
  int64_t num_labels() const;        // 0 for LM
  // Sets embd_pdrop, attn_pdrop and resid_pdrop to p (0 <= p < 1): the
  // probabilities forward_backward uses; saved with config().
  void set_dropout(double p);
  // The products' arithmetic of forward_backward (TrainPrecision); bf16 off
  // CUDA is an Error. Evaluation (loss, logits) always runs fp32.
  void set_precision(TrainPrecision p);
  TrainPrecision precision() const;
  // The model whose weights are the current values themselves (it sees
  // every update in place): the forward of training and evaluation, usable
  // with src/eval. Valid while this object lives.
  const GPT2Model& inference_model() const;
  Device device() const;

  // In a fixed order (HF's named_parameters order; the tied lm_head is not a
  // separate parameter). Optimizers and checkpoints rely on this order.
  std::vector<Parameter>& parameters();
  const std::vector<Parameter>& parameters() const;
  void zero_grad();
  // The flat buffers every Parameter's value and grad view, their layout,
  // and each parameter's range of them in parameters() order.
  const Tensor& flat_values() const;
  Tensor& flat_grads();
  const FlatLayout& layout() const;
  std::span<const backend::GradSegment> grad_segments() const;

  // Forward with `dropout`, loss, and backward; gradients are ADDED to
  // Parameter::grad, scaled by `grad_scale` (1 for a whole batch; 1/k to
  // average k micro-batches). Classify: labels.size() == batch, each in
  // [0, num_labels). LM: labels must be empty.
  LossValue forward_backward(const TokenBatch& batch, std::span<const int32_t> labels, const DropoutContext& dropout,
                             float grad_scale = 1.0f);
  // Loss without gradients, eval mode.
  LossValue loss(const TokenBatch& batch, std::span<const int32_t> labels) const;
  // Eval-mode logits: classify [batch, num_labels]; LM [batch, seq, vocab].
  Tensor logits(const TokenBatch& batch) const;

  // Canonical name -> the current values on the host, for save_checkpoint
  // (views on the CPU, copies from other devices).
  std::vector<std::pair<std::string, Tensor>> canonical_tensors() const;

 private:
  struct Impl;
  explicit TrainableGPT2(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpt2q::train
