// Shape checks and device dispatch for ops_backward.h, written once as
// templates over a kernel set (fast or reference), as ops.cpp does.
#include "ops/ops_backward.h"

#include <cmath>
#include <type_traits>

#include "backend/cpu/adamw_kernels.h"
#include "backend/cpu/grad_norm_kernels.h"
#include "backend/cpu/kernels_backward.h"
#include "backend/cpu/reference_backward.h"
#include "ops/op_checks.h"
#include "ops/ops.h"

#ifdef GPT2Q_CUDA
#include "backend/cuda/attention_train.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/grad_norm.h"
#include "backend/cuda/train_kernels.h"
#endif

namespace gpt2q::ops {

namespace {

using namespace detail;  // op_checks.h

struct FastCpu {
  static constexpr auto dropout = cpu::dropout;
  static constexpr auto linear_backward = cpu::linear_backward;
  static constexpr auto matmul_nt_backward = cpu::matmul_nt_backward;
  static constexpr auto layer_norm_backward = cpu::layer_norm_backward;
  static constexpr auto gelu_new_backward = cpu::gelu_new_backward;
  static constexpr auto gelu_erf_backward = cpu::gelu_erf_backward;
  static constexpr auto embedding_backward = cpu::embedding_backward;
  static constexpr auto attention_forward_train = cpu::attention_forward_train;
  static constexpr auto attention_backward = cpu::attention_backward;
  static constexpr auto cross_entropy = cpu::cross_entropy;
  static constexpr auto adamw_update = cpu::adamw_update;
  static constexpr auto clip_grad_norm = cpu::clip_grad_norm;
};

struct ReferenceCpu {
  static constexpr auto dropout = cpu::reference::dropout;
  static constexpr auto linear_backward = cpu::reference::linear_backward;
  static constexpr auto matmul_nt_backward = cpu::reference::matmul_nt_backward;
  static constexpr auto layer_norm_backward = cpu::reference::layer_norm_backward;
  static constexpr auto gelu_new_backward = cpu::reference::gelu_new_backward;
  static constexpr auto gelu_erf_backward = cpu::reference::gelu_erf_backward;
  static constexpr auto embedding_backward = cpu::reference::embedding_backward;
  static constexpr auto attention_forward_train = cpu::reference::attention_forward_train;
  static constexpr auto attention_backward = cpu::reference::attention_backward;
  static constexpr auto cross_entropy = cpu::reference::cross_entropy;
  static constexpr auto adamw_update = cpu::reference::adamw_update;
  static constexpr auto clip_grad_norm = cpu::reference::clip_grad_norm;
};

#ifdef GPT2Q_CUDA
// The training kernels CUDA has so far (backend/cuda/train_kernels.h), on
// the calling thread's stream; the other backward ops are CPU-only yet.
struct FastCuda {
  static cudaStream_t stream() { return static_cast<cudaStream_t>(cuda_stream()); }
  static void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first) {
    cuda::dropout(x, n, p, key, first, stream());
  }
  static void gelu_new_backward(const float* x, float* dy, int64_t n) { cuda::gelu_new_backward(x, dy, n, stream()); }
  static void gelu_erf_backward(const float* x, float* dy, int64_t n) { cuda::gelu_erf_backward(x, dy, n, stream()); }
  static void adamw_update(const backend::AdamWArgs& a) { cuda::adamw_update(a, stream()); }
  static backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count,
                                          double max_norm) {
    return cuda::clip_grad_norm(flat, segments, count, max_norm, stream());
  }
  static void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps,
                                  const float* dy, float* dx, float* dw, float* db) {
    cuda::layer_norm_backward(x, rows, cols, w, eps, dy, dx, dw, db, stream());
  }
  static void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                              const float* dy, float* dx, float* dw, float* db) {
    cuda::linear_backward(x, rows, in, w, out, dy, dx, dw, db, stream());
  }
  static void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc,
                                 float* da, float* db) {
    cuda::matmul_nt_backward(a, m, k, b, n, dc, da, db, stream());
  }
  static void attention_forward_train(const backend::TrainAttentionArgs& a, const float* qkv, float* probs,
                                      float* dropped, float* out) {
    if (cuda::train_attention_batched()) {
      cuda::attention_forward_train_batched(a, qkv, probs, dropped, out, stream());
    } else {
      cuda::attention_forward_train(a, qkv, probs, dropped, out, stream());
    }
  }
  // The row kernels recompute the dropout from its counters; the batched ones read dropped.
  static void attention_backward(const backend::TrainAttentionArgs& a, const float* qkv, const float* probs,
                                 const float* dropped, const float* dout, float* dqkv) {
    if (cuda::train_attention_batched()) {
      cuda::attention_backward_batched(a, qkv, probs, dropped, dout, dqkv, stream());
    } else {
      cuda::attention_backward(a, qkv, probs, dout, dqkv, stream());
    }
  }
  // ids, positions and targets are host arrays (checked there by the ops).
  static void embedding_backward(const int32_t* ids, const int64_t* positions, int64_t rows, const float* dout,
                                 int64_t cols, float* dwte, float* dwpe) {
    cuda::embedding_backward(ids, positions, rows, dout, cols, dwte, dwpe, stream());
  }
  static void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t cols,
                            float grad_scale, float* dlogits, double* row_loss) {
    cuda::cross_entropy(logits, targets, rows, cols, grad_scale, dlogits, row_loss, stream());
  }
};
#endif

// Kernel families (ops/kernel_sets.h's convention) for the ops that have
// CUDA kernels.
#ifdef GPT2Q_CUDA
using Fast = KernelFamily<FastCpu, FastCuda>;
#else
using Fast = KernelFamily<FastCpu, void>;
#endif
using Reference = KernelFamily<ReferenceCpu, void>;

void require_shape(const char* op, const char* what, const Tensor& t, const Shape& shape) {
  require_f32(op, what, t);
  if (t.shape() != shape) fail("{}: {} is {}, expected {}", op, what, shape_str(t.shape()), shape_str(shape));
}

// A [rows, cols] matrix however many leading dimensions it has.
void require_rows(const char* op, const char* what, const Tensor& t, int64_t rows, int64_t cols) {
  require_f32(op, what, t);
  if (rows_of(t) != rows || last_dim(t) != cols)
    fail("{}: {} is {}, expected [{}, {}]", op, what, shape_str(t.shape()), rows, cols);
}

template <typename F>
void dropout_impl(Tensor& x, float p, uint64_t key) {
  require_f32("dropout", "x", x);
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout: probability {} outside [0, 1)", p);
  dispatch_kernels<typename F::Cpu, typename F::Cuda>("dropout", x.device(), [&](auto k) {
    decltype(k)::dropout(device_data<float>(x), x.numel(), p, key, 0);
  });
}

template <typename F>
void linear_backward_impl(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dx, Tensor& dw, Tensor& db) {
  const char* op = "linear_backward";
  require_f32(op, "w", w);
  if (w.ndim() != 2) fail("{}: weight must be 2-D [in, out], got {}", op, shape_str(w.shape()));
  const int64_t in = w.dim(0), out = w.dim(1), rows = rows_of(x);
  require_rows(op, "x", x, rows, in);
  require_rows(op, "dy", dy, rows, out);
  if (dx.defined()) require_rows(op, "dx", dx, rows, in);
  require_shape(op, "dw", dw, w.shape());
  if (db.defined()) require_shape(op, "db", db, {out});
  same_device(op, {&x, &w, &dy, &dx, &dw, &db});
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, x.device(), [&](auto k) {
    decltype(k)::linear_backward(device_data<float>(x), rows, in, device_data<float>(w), out, device_data<float>(dy),
                                 dx.defined() ? device_data<float>(dx) : nullptr, device_data<float>(dw),
                                 db.defined() ? device_data<float>(db) : nullptr);
  });
}

template <typename F>
void matmul_nt_backward_impl(const Tensor& a, const Tensor& b, const Tensor& dc, Tensor& da, Tensor& db) {
  const char* op = "matmul_nt_backward";
  require_f32(op, "b", b);
  if (b.ndim() != 2) fail("{}: b must be 2-D [n, k], got {}", op, shape_str(b.shape()));
  const int64_t n = b.dim(0), k = b.dim(1), m = rows_of(a);
  require_rows(op, "a", a, m, k);
  require_rows(op, "dc", dc, m, n);
  if (da.defined()) require_rows(op, "da", da, m, k);
  require_shape(op, "db", db, b.shape());
  same_device(op, {&a, &b, &dc, &da, &db});
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, a.device(), [&](auto set) {
    decltype(set)::matmul_nt_backward(device_data<float>(a), m, k, device_data<float>(b), n, device_data<float>(dc),
                                      da.defined() ? device_data<float>(da) : nullptr, device_data<float>(db));
  });
}

template <typename F>
void layer_norm_backward_impl(const Tensor& x, const Tensor& w, float eps, const Tensor& dy, Tensor& dx, Tensor& dw,
                              Tensor& db) {
  const char* op = "layer_norm_backward";
  require_f32(op, "x", x);
  const int64_t cols = last_dim(x), rows = rows_of(x);
  require_shape(op, "weight", w, {cols});
  require_rows(op, "dy", dy, rows, cols);
  require_rows(op, "dx", dx, rows, cols);
  require_shape(op, "dw", dw, {cols});
  require_shape(op, "db", db, {cols});
  same_device(op, {&x, &w, &dy, &dx, &dw, &db});
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, x.device(), [&](auto k) {
    decltype(k)::layer_norm_backward(device_data<float>(x), rows, cols, device_data<float>(w), eps,
                                     device_data<float>(dy), device_data<float>(dx), device_data<float>(dw),
                                     device_data<float>(db));
  });
}

// run(set, x, dy, n) calls the set's kernel.
template <typename F, typename Run>
void unary_backward_impl(const char* op, const Tensor& x, Tensor& dy, Run&& run) {
  require_f32(op, "x", x);
  require_f32(op, "dy", dy);
  same_device(op, {&x, &dy});
  if (x.numel() != dy.numel()) fail("{}: x {} and dy {} differ", op, shape_str(x.shape()), shape_str(dy.shape()));
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(
      op, x.device(), [&](auto k) { run(k, device_data<float>(x), device_data<float>(dy), x.numel()); });
}

template <typename F>
void adamw_update_impl(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                       const backend::AdamWStep& k) {
  const char* op = "adamw_update";
  for (auto [what, t] : {std::pair<const char*, const Tensor*>{"param", &param}, {"grad", &grad},
                         {"exp_avg", &exp_avg}, {"exp_avg_sq", &exp_avg_sq}}) {
    require_f32(op, what, *t);
    if (t->numel() != param.numel())
      fail("{}: {} has {} elements, param {}", op, what, t->numel(), param.numel());
  }
  same_device(op, {&param, &grad, &exp_avg, &exp_avg_sq});
  const backend::AdamWArgs a{device_data<float>(param), device_data<float>(grad), device_data<float>(exp_avg),
                             device_data<float>(exp_avg_sq), param.numel(), k};
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, param.device(),
                                                      [&](auto set) { decltype(set)::adamw_update(a); });
}

template <typename F>
void embedding_backward_impl(const Tensor& ids, const Tensor& positions, const Tensor& dout, Tensor& dwte,
                             Tensor& dwpe) {
  const char* op = "embedding_backward";
  require_f32(op, "dwte", dwte);
  require_f32(op, "dwpe", dwpe);
  const int64_t rows = check_embedding_args(op, ids, positions, dwte, dwpe), cols = dwte.dim(1);
  if (ids.device() != Device::CPU || positions.device() != Device::CPU)
    fail("{}: ids and positions are read on the host, got {} tensors", op,
         device_name(ids.device() != Device::CPU ? ids.device() : positions.device()));
  require_rows(op, "dout", dout, rows, cols);
  same_device(op, {&dout, &dwte, &dwpe});
  const int32_t* id = ids.data<int32_t>();
  const int64_t* pos = positions.data<int64_t>();
  check_embedding_indices(id, pos, rows, dwte.dim(0), dwpe.dim(0));
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, dout.device(), [&](auto k) {
    decltype(k)::embedding_backward(id, pos, rows, device_data<float>(dout), cols, device_data<float>(dwte),
                                    device_data<float>(dwpe));
  });
}

cpu::TrainAttentionArgs attention_args(const char* op, const Tensor& qkv, const Tensor& key_mask,
                                       const AttentionTrainParams& p) {
  require_f32(op, "qkv", qkv);
  const QkvDims d = check_qkv(op, qkv, p.n_head);
  if (!(p.attn_p >= 0.0f && p.attn_p < 1.0f)) fail("{}: dropout probability {} outside [0, 1)", op, p.attn_p);
  cpu::TrainAttentionArgs a;
  a.batch = d.batch;
  a.seq = d.seq;
  a.n_head = p.n_head;
  a.head_dim = d.head_dim;
  a.scale = p.scale;
  a.attn_p = p.attn_p;
  a.dropout_key = p.dropout_key;
  check_key_mask(op, key_mask, a.batch, a.seq);
  if (key_mask.defined()) {
    a.key_mask = device_data<uint8_t>(key_mask);
    a.key_mask_stride = key_mask.dim(1);
  }
  return a;
}

void check_probs(const char* op, const cpu::TrainAttentionArgs& a, const Tensor& probs, const Tensor& dropped) {
  const Shape shape{a.batch, a.n_head, a.seq, a.seq};
  require_shape(op, "probs", probs, shape);
  // CUDA's kernels regenerate the dropped probabilities from the counters
  // when they are not kept; the CPU's read them.
  if (dropped.defined() || (a.attn_p > 0.0f && probs.device() == Device::CPU))
    require_shape(op, "dropped", dropped, shape);
}

// The flash kernels' [B, H, T] log-sum-exp state: CUDA only.
bool flash_state(const char* op, const cpu::TrainAttentionArgs& a, const Tensor& saved, const Tensor& dropped) {
  if (!saved.defined() || saved.ndim() != 3) return false;
  require_shape(op, "log-sum-exp", saved, {a.batch, a.n_head, a.seq});
  if (dropped.defined()) fail("{}: the flash kernels keep no dropped probabilities", op);
  if (saved.device() != Device::CUDA)
    fail("{}: a [B, H, T] log-sum-exp state is CUDA's flash kernels'; {} keeps the probabilities", op,
         device_name(saved.device()));
  return true;
}

template <typename F>
void attention_train_impl(const Tensor& qkv, const Tensor& key_mask, const AttentionTrainParams& params,
                          Tensor& probs, Tensor& dropped, Tensor& out) {
  const char* op = "causal_self_attention_train";
  cpu::TrainAttentionArgs a = attention_args(op, qkv, key_mask, params);
  require_shape(op, "out", out, {a.batch, a.seq, a.n_head * a.head_dim});
  same_device(op, {&qkv, &key_mask, &probs, &dropped, &out});
  if (flash_state(op, a, probs, dropped)) {
#ifdef GPT2Q_CUDA
    if constexpr (!std::is_void_v<typename F::Cuda>) {
      cuda::attention_forward_train_flash(a, device_data<float>(qkv), device_data<float>(probs),
                                          device_data<float>(out), F::Cuda::stream());
      return;
    }
#endif
    fail("{}: these kernels have no flash attention", op);
  }
  check_probs(op, a, probs, dropped);
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, qkv.device(), [&](auto k) {
    decltype(k)::attention_forward_train(a, device_data<float>(qkv), device_data<float>(probs),
                                         dropped.defined() ? device_data<float>(dropped) : nullptr,
                                         device_data<float>(out));
  });
}

template <typename F>
void attention_backward_impl(const Tensor& qkv, const Tensor& key_mask, const Tensor& probs, const Tensor& dropped,
                             const Tensor& out, const AttentionTrainParams& params, const Tensor& dout,
                             Tensor& dqkv) {
  const char* op = "causal_self_attention_backward";
  cpu::TrainAttentionArgs a = attention_args(op, qkv, key_mask, params);
  require_shape(op, "dout", dout, {a.batch, a.seq, a.n_head * a.head_dim});
  require_shape(op, "dqkv", dqkv, qkv.shape());
  same_device(op, {&qkv, &key_mask, &probs, &dropped, &out, &dout, &dqkv});
  if (flash_state(op, a, probs, dropped)) {
    require_shape(op, "out", out, {a.batch, a.seq, a.n_head * a.head_dim});
#ifdef GPT2Q_CUDA
    if constexpr (!std::is_void_v<typename F::Cuda>) {
      cuda::attention_backward_flash(a, device_data<float>(qkv), device_data<float>(probs), device_data<float>(out),
                                     device_data<float>(dout), device_data<float>(dqkv), F::Cuda::stream());
      return;
    }
#endif
    fail("{}: these kernels have no flash attention", op);
  }
  check_probs(op, a, probs, dropped);
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, qkv.device(), [&](auto k) {
    decltype(k)::attention_backward(a, device_data<float>(qkv), device_data<float>(probs),
                                    dropped.defined() ? device_data<float>(dropped) : nullptr,
                                    device_data<float>(dout), device_data<float>(dqkv));
  });
}

template <typename F>
void cross_entropy_rows_impl(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits,
                             Tensor& row_loss) {
  const char* op = "cross_entropy";
  require_f32(op, "logits", logits);
  const int64_t rows = rows_of(logits), cols = last_dim(logits);
  require_rows(op, "dlogits", dlogits, rows, cols);
  if (targets.dtype() != DType::I32 || targets.numel() != rows)
    fail("{}: targets must be I32 [{}], got {} {}", op, rows, dtype_name(targets.dtype()), shape_str(targets.shape()));
  if (row_loss.dtype() != DType::F64 || row_loss.numel() != rows)
    fail("{}: row losses must be F64 [{}], got {} {}", op, rows, dtype_name(row_loss.dtype()),
         shape_str(row_loss.shape()));
  same_device(op, {&logits, &dlogits, &row_loss});
  if (targets.device() != Device::CPU)
    fail("{}: targets are read on the host, got a {} tensor", op, device_name(targets.device()));
  const int32_t* t = targets.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] < -1 || t[r] >= cols) fail("{}: target {} outside [0, {}) (or -1 = ignored)", op, t[r], cols);
  if (rows == 0) return;
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, logits.device(), [&](auto k) {
    decltype(k)::cross_entropy(device_data<float>(logits), t, rows, cols, grad_scale, device_data<float>(dlogits),
                               device_data<double>(row_loss));
  });
}

template <typename F>
double cross_entropy_impl(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits) {
  Tensor row_loss = ops::scratch({rows_of(logits)}, DType::F64, logits.device());
  cross_entropy_rows_impl<F>(logits, targets, grad_scale, dlogits, row_loss);
  const Tensor host = to_device(row_loss, Device::CPU);  // waits for a device
  double total = 0.0;
  for (double l : host.span<const double>()) total += l;
  return total;
}

template <typename F>
backend::GradClip clip_grad_norm_impl(Tensor& flat, std::span<const backend::GradSegment> segments, double max_norm) {
  const char* op = "clip_grad_norm";
  require_f32(op, "flat_grads", flat);
  if (!std::isfinite(max_norm)) fail("{}: max_norm {} is not finite", op, max_norm);
  // Segments may come in any order (the parameters' order sets the sum's);
  // each must lie inside the buffer.
  for (const backend::GradSegment& s : segments)
    if (s.offset < 0 || s.numel < 0 || s.offset + s.numel > flat.numel())
      fail("{}: segment [{}, +{}) lies outside the buffer of {}", op, s.offset, s.numel, flat.numel());
  backend::GradClip clip;
  dispatch_kernels<typename F::Cpu, typename F::Cuda>(op, flat.device(), [&](auto k) {
    clip = decltype(k)::clip_grad_norm(device_data<float>(flat), segments.data(),
                                       static_cast<int64_t>(segments.size()), max_norm);
  });
  return clip;
}

}  // namespace

uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t micro, uint64_t site) {
  return cpu::dropout_key(seed, step, micro, site);
}
bool dropout_kept(uint64_t key, uint64_t index, float p) { return cpu::dropout_uniform(key, index) >= p; }

#define GPT2Q_BACKWARD_OPS(F)                                                                                        \
  void dropout(Tensor& x, float p, uint64_t key) { dropout_impl<F>(x, p, key); }                                      \
  void adamw_update(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,                           \
                    const backend::AdamWStep& k) {                                                                    \
    adamw_update_impl<F>(param, grad, exp_avg, exp_avg_sq, k);                                                        \
  }                                                                                                                   \
  void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dx, Tensor& dw, Tensor& db) {     \
    linear_backward_impl<F>(x, w, dy, dx, dw, db);                                                                    \
  }                                                                                                                   \
  void matmul_nt_backward(const Tensor& a, const Tensor& b, const Tensor& dc, Tensor& da, Tensor& db) {               \
    matmul_nt_backward_impl<F>(a, b, dc, da, db);                                                                     \
  }                                                                                                                   \
  void layer_norm_backward(const Tensor& x, const Tensor& w, float eps, const Tensor& dy, Tensor& dx, Tensor& dw,    \
                           Tensor& db) {                                                                              \
    layer_norm_backward_impl<F>(x, w, eps, dy, dx, dw, db);                                                           \
  }                                                                                                                   \
  void gelu_new_backward(const Tensor& x, Tensor& dy) {                                                               \
    unary_backward_impl<F>("gelu_new_backward", x, dy, [](auto k, const float* xp, float* dyp, int64_t n) {           \
      decltype(k)::gelu_new_backward(xp, dyp, n);                                                                     \
    });                                                                                                               \
  }                                                                                                                   \
  void gelu_erf_backward(const Tensor& x, Tensor& dy) {                                                               \
    unary_backward_impl<F>("gelu_backward", x, dy, [](auto k, const float* xp, float* dyp, int64_t n) {               \
      decltype(k)::gelu_erf_backward(xp, dyp, n);                                                                     \
    });                                                                                                               \
  }                                                                                                                   \
  void embedding_backward(const Tensor& ids, const Tensor& positions, const Tensor& dout, Tensor& dwte,               \
                          Tensor& dwpe) {                                                                             \
    embedding_backward_impl<F>(ids, positions, dout, dwte, dwpe);                                                     \
  }                                                                                                                   \
  void causal_self_attention_train(const Tensor& qkv, const Tensor& key_mask, const AttentionTrainParams& params,    \
                                   Tensor& probs, Tensor& dropped, Tensor& out) {                                     \
    attention_train_impl<F>(qkv, key_mask, params, probs, dropped, out);                                              \
  }                                                                                                                   \
  void causal_self_attention_backward(const Tensor& qkv, const Tensor& key_mask, const Tensor& probs,                \
                                      const Tensor& dropped, const Tensor& out, const AttentionTrainParams& params,   \
                                      const Tensor& dout, Tensor& dqkv) {                                             \
    attention_backward_impl<F>(qkv, key_mask, probs, dropped, out, params, dout, dqkv);                               \
  }                                                                                                                   \
  double cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits) {             \
    return cross_entropy_impl<F>(logits, targets, grad_scale, dlogits);                                               \
  }                                                                                                                   \
  void cross_entropy_rows(const Tensor& logits, const Tensor& targets, float grad_scale, Tensor& dlogits,            \
                          Tensor& row_loss) {                                                                         \
    cross_entropy_rows_impl<F>(logits, targets, grad_scale, dlogits, row_loss);                                       \
  }                                                                                                                   \
  backend::GradClip clip_grad_norm(Tensor& flat_grads, std::span<const backend::GradSegment> segments,                \
                                   double max_norm) {                                                                 \
    return clip_grad_norm_impl<F>(flat_grads, segments, max_norm);                                                    \
  }

GPT2Q_BACKWARD_OPS(Fast)

namespace reference {
GPT2Q_BACKWARD_OPS(Reference)
}  // namespace reference

#undef GPT2Q_BACKWARD_OPS

Shape attention_train_saved_shape(Device device, int64_t batch, int64_t n_head, int64_t seq, int64_t head_dim) {
#ifdef GPT2Q_CUDA
  if (device == Device::CUDA && cuda::fp32_products() == cuda::Fp32Products::bf16 &&
      cuda::train_attention_flash(head_dim))
    return {batch, n_head, seq};
#else
  (void)device;
  (void)head_dim;
#endif
  return {batch, n_head, seq, seq};
}

Bf16ProductsScope::Bf16ProductsScope(bool on) : on_(on) {
  if (!on_) return;
#ifdef GPT2Q_CUDA
  was_bf16_ = cuda::fp32_products() == cuda::Fp32Products::bf16;
  cuda::set_fp32_products(cuda::Fp32Products::bf16);
#else
  fail("bf16 products run on CUDA, and this gpt2q was built without it");
#endif
}

Bf16ProductsScope::~Bf16ProductsScope() {
#ifdef GPT2Q_CUDA
  if (on_ && !was_bf16_) cuda::set_fp32_products(cuda::Fp32Products::exact);
#endif
}

}  // namespace gpt2q::ops
