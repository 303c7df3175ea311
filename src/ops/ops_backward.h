#pragma once
// Device-independent ops of the training pass (see ops.h for the
// conventions): the backward of every op of the GPT-2 forward, dropout, a
// forward attention that keeps its probabilities for the backward, and
// softmax cross entropy, and the AdamW update. Each checks shapes and dtypes,
// then dispatches to a backend (backend/cpu/kernels_backward.h,
// backend/cuda/train_kernels.h and their neighbours). Parameter gradients are
// ACCUMULATED (+=); activation gradients are overwritten unless said
// otherwise. Same signatures in ops::reference run the scalar kernels.
#include <cstdint>
#include <span>

#include "backend/adamw_args.h"
#include "backend/grad_norm_args.h"
#include "core/tensor.h"

namespace gpt2q::ops {

// Dropout masks are a pure function of counters: element i of a dropout site
// is kept iff uniform(key, i) >= p with key = dropout_key(seed, step, micro,
// site) (splitmix64 chain; uniform = top 24 bits of splitmix64(key + i) ·
// 2^-24). Kept elements are scaled by 1 / (1 − p).
uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t micro, uint64_t site);
bool dropout_kept(uint64_t key, uint64_t index, float p);

struct AttentionTrainParams {
  int64_t n_head = 1;
  float scale = 1.0f;       // on the scores (1/sqrt(head_dim), / (layer+1) ...)
  float attn_p = 0.0f;      // dropout on the probabilities; 0 = none
  uint64_t dropout_key = 0; // mask index of probability (b, h, i, j <= i): ((b·H + h)·T + i)·T + j
};

// In place, x = dropout(x) (0 <= p < 1); on a gradient it applies the same mask.
void dropout(Tensor& x, float p, uint64_t key);

// y = x·W + b with W [in, out]: dx = dy·Wᵀ (dx may be undefined: skipped),
// dw += xᵀ·dy, db += Σ_rows dy (db may be undefined).
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dx, Tensor& dw, Tensor& db);
// c = a·bᵀ (a [m, k], b [n, k]): da = dc·b (may be undefined), db += dcᵀ·a.
void matmul_nt_backward(const Tensor& a, const Tensor& b, const Tensor& dc, Tensor& da, Tensor& db);
// LayerNorm over the last dimension: dx += ∂L/∂x (accumulated: the residual
// stream's gradient), dw += Σ dy·x̂, db += Σ dy.
void layer_norm_backward(const Tensor& x, const Tensor& w, float eps, const Tensor& dy, Tensor& dx, Tensor& dw,
                         Tensor& db);
// In place dy *= gelu'(x), x the activation's input.
void gelu_new_backward(const Tensor& x, Tensor& dy);
void gelu_erf_backward(const Tensor& x, Tensor& dy);
// dwte[ids[r]] += dout[r], dwpe[positions[r]] += dout[r] (ids I32, positions
// I64, both host tensors on every device: they are checked there).
void embedding_backward(const Tensor& ids, const Tensor& positions, const Tensor& dout, Tensor& dwte, Tensor& dwpe);

// Causal self-attention as ops::causal_self_attention (qkv [B, T, 3C], key
// mask U8 [B, >= T] or undefined), with dropout on the probabilities. What it
// keeps for the backward in `saved` has the shape attention_train_saved_shape
// gives:
//   - [B, H, T, T]: the probabilities before dropout, with dropped [B, H, T,
//     T] after it (may be undefined when params.attn_p is 0, and on CUDA
//     always: the backward then regenerates it from the counters, which
//     saves a [B, H, T, T] buffer per layer);
//   - [B, H, T]: each row's log-sum-exp (CUDA's flash kernels, under bf16
//     products: the backward recomputes the probabilities; dropped undefined).
void causal_self_attention_train(const Tensor& qkv, const Tensor& key_mask, const AttentionTrainParams& params,
                                 Tensor& saved, Tensor& dropped, Tensor& out);
// dqkv [B, T, 3C] from dout [B, T, C], the forward's saved state, and its out
// [B, T, C] (read by the flash kernels only; may be undefined otherwise).
void causal_self_attention_backward(const Tensor& qkv, const Tensor& key_mask, const Tensor& saved,
                                    const Tensor& dropped, const Tensor& out, const AttentionTrainParams& params,
                                    const Tensor& dout, Tensor& dqkv);
// The shape of the training attention's saved state on `device` (above):
// [B, H, T] where the flash kernels run (CUDA under Bf16ProductsScope, head
// size 64, unless GPT2Q_TRAIN_ATTENTION names the batched or row kernels),
// else [B, H, T, T].
Shape attention_train_saved_shape(Device device, int64_t batch, int64_t n_head, int64_t seq, int64_t head_dim);

// While it lives, the calling thread's products of fp32 operands (linear,
// matmul_nt and the training attention, forward and backward) run as bf16 on
// CUDA's tensor cores with fp32 sums: the bf16 trainer (PyTorch's float32
// matmul precision "medium"; activations, master weights, optimizer state
// and the loss stay fp32). `on` false changes nothing. Without CUDA, on is an
// Error; CPU kernels are unaffected (the trainer refuses bf16 there).
class Bf16ProductsScope {
 public:
  explicit Bf16ProductsScope(bool on);
  ~Bf16ProductsScope();
  Bf16ProductsScope(const Bf16ProductsScope&) = delete;
  Bf16ProductsScope& operator=(const Bf16ProductsScope&) = delete;

 private:
  bool on_;
  bool was_bf16_ = false;
};

// One AdamW update of param in place, with its moments (all F32, one size,
// one device; train/adamw.h has the formula, the constants come from
// train::adamw_step_constants). Bit for bit the same on every device.
void adamw_update(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const backend::AdamWStep& k);

// Global-norm gradient clipping (backend/grad_norm_args.h) of gradients held
// in one flat F32 buffer, each parameter a segment of it: returns the total
// norm before clipping and the factor applied (max_norm <= 0: none). The
// norm comes back to the host, so on a GPU this waits for the stream.
backend::GradClip clip_grad_norm(Tensor& flat_grads, std::span<const backend::GradSegment> segments,
                                 double max_norm);

// Softmax cross entropy of logits [rows, classes] against targets (I32
// [rows], a host tensor on every device; -1 = ignored). Returns the SUM of the per-row losses (double);
// dlogits (may be logits itself) = grad_scale · (softmax − onehot), 0 on
// ignored rows. Targets outside [0, classes) are an Error.
double cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits);
// The same, each row's loss written to row_loss (F64 [rows], on the logits'
// device; 0 for an ignored row) and nothing brought back: on a GPU it waits
// for nothing, so a step's losses can be read once, at its end.
void cross_entropy_rows(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits,
                        Tensor& row_loss);

namespace reference {
void dropout(Tensor& x, float p, uint64_t key);
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dx, Tensor& dw, Tensor& db);
void matmul_nt_backward(const Tensor& a, const Tensor& b, const Tensor& dc, Tensor& da, Tensor& db);
void layer_norm_backward(const Tensor& x, const Tensor& w, float eps, const Tensor& dy, Tensor& dx, Tensor& dw,
                         Tensor& db);
void gelu_new_backward(const Tensor& x, Tensor& dy);
void gelu_erf_backward(const Tensor& x, Tensor& dy);
void embedding_backward(const Tensor& ids, const Tensor& positions, const Tensor& dout, Tensor& dwte, Tensor& dwpe);
void causal_self_attention_train(const Tensor& qkv, const Tensor& key_mask, const AttentionTrainParams& params,
                                 Tensor& probs, Tensor& dropped, Tensor& out);
void causal_self_attention_backward(const Tensor& qkv, const Tensor& key_mask, const Tensor& probs,
                                    const Tensor& dropped, const Tensor& out, const AttentionTrainParams& params,
                                    const Tensor& dout, Tensor& dqkv);
double cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits);
void cross_entropy_rows(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits,
                        Tensor& row_loss);
void adamw_update(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const backend::AdamWStep& k);
backend::GradClip clip_grad_norm(Tensor& flat_grads, std::span<const backend::GradSegment> segments,
                                 double max_norm);
}  // namespace reference

}  // namespace gpt2q::ops
