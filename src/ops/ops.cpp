// Shape checks and device dispatch for ops.h and ops/reference.h. Both are
// written once, as templates over a kernel family (fast or reference), so the
// checks cannot drift apart. A family names a kernel set per device; each
// op's body is a generic lambda that dispatch_kernels (op_checks.h) calls
// with the set for the tensors' device.
#include "ops/ops.h"

#include <cmath>

#include "ops/kernel_sets.h"
#include "ops/op_checks.h"
#include "ops/reference.h"

namespace gpt2q::ops {

namespace {

using namespace detail;  // op_checks.h, kernel_sets.h

template <typename F>
void layer_norm_impl(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  const char* op = "layer_norm";
  require_f32(op, "x", x);
  require_f32(op, "weight", w);
  require_f32(op, "bias", b);
  require_float_type(op, "y", y);
  same_device(op, {&x, &w, &b, &y});
  const int64_t cols = last_dim(x);
  if (w.numel() != cols || b.numel() != cols)
    fail("{}: weight {} / bias {} do not match {} features", op, shape_str(w.shape()), shape_str(b.shape()), cols);
  if (y.numel() != x.numel() || last_dim(y) != cols)
    fail("{}: output {} does not match input {}", op, shape_str(y.shape()), shape_str(x.shape()));
  run_kernels<F>(op, x.device(), [&](auto k) {
    decltype(k)::layer_norm(device_data<float>(x), rows_of(x), cols, device_data<float>(w), device_data<float>(b),
                            eps, y.raw(), y.dtype());
  });
}

// `apply(kernels, x, n)` runs one in-place elementwise kernel of the set.
template <typename F, typename Apply>
void unary_impl(const char* op, Tensor& x, Apply apply) {
  require_float_type(op, "x", x);
  run_kernels<F>(op, x.device(), [&](auto k) { apply(k, x.raw(), x.dtype(), x.numel()); });
}

template <typename F>
void softmax_impl(Tensor& x) {
  require_f32("softmax", "x", x);
  run_kernels<F>("softmax", x.device(),
                 [&](auto k) { decltype(k)::softmax_rows(device_data<float>(x), rows_of(x), last_dim(x)); });
}

template <typename F>
void cast_impl(const Tensor& x, Tensor& y) {
  const char* op = "cast";
  require_float_type(op, "x", x);
  require_float_type(op, "y", y);
  same_device(op, {&x, &y});
  if (x.numel() != y.numel()) fail("{}: {} values into {}", op, x.numel(), y.numel());
  run_kernels<F>(op, x.device(), [&](auto k) { decltype(k)::cast(x.raw(), x.dtype(), y.raw(), y.dtype(), x.numel()); });
}

template <typename F>
void add_impl(Tensor& x, const Tensor& y) {
  const char* op = "add";
  require_f32(op, "x", x);
  require_f32(op, "y", y);
  same_device(op, {&x, &y});
  if (x.shape() != y.shape()) fail("{}: shapes {} and {} differ", op, shape_str(x.shape()), shape_str(y.shape()));
  run_kernels<F>(op, x.device(),
                 [&](auto k) { decltype(k)::add_inplace(device_data<float>(x), device_data<float>(y), x.numel()); });
}

template <typename F>
void embedding_impl(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out) {
  const char* op = "embedding";
  require_f32(op, "wte", wte);
  require_f32(op, "wpe", wpe);
  require_f32(op, "out", out);
  same_device(op, {&wte, &wpe, &out});
  const int64_t rows = check_embedding_args(op, ids, positions, wte, wpe), cols = wte.dim(1);
  if (out.numel() != rows * cols || last_dim(out) != cols)
    fail("{}: output {} should be [{}, {}]", op, shape_str(out.shape()), rows, cols);
  // Ids and positions are checked on the host, so that a bad one is an Error
  // and never an out-of-bounds read on a device. Host ids (the usual case:
  // they come from the tokenizer) are used as they are; device ids are
  // copied down for the check (a small synchronising copy).
  const Tensor ids_host = to_device(ids, Device::CPU), positions_host = to_device(positions, Device::CPU);
  check_embedding_indices(ids_host.data<int32_t>(), positions_host.data<int64_t>(), rows, wte.dim(0), wpe.dim(0));
  // The kernel reads them where the tables are (uploaded if need be).
  const Tensor ids_here = to_device(ids, out.device()), positions_here = to_device(positions, out.device());
  run_kernels<F>(op, out.device(), [&](auto k) {
    decltype(k)::embedding(device_data<int32_t>(ids_here), device_data<int64_t>(positions_here), rows,
                           device_data<float>(wte), device_data<float>(wpe), cols, device_data<float>(out));
  });
}

struct AttentionDims {
  int64_t B, T, C, H, hd;
};

AttentionDims check_attention(const char* op, const Tensor& qkv, const Tensor& key_mask, int64_t n_head,
                              const Tensor& out, int64_t mask_min_cols) {
  require_float_type(op, "qkv", qkv);
  if (out.dtype() != qkv.dtype()) fail("{}: out is {} but qkv {}", op, dtype_name(out.dtype()), dtype_name(qkv.dtype()));
  same_device(op, {&qkv, &key_mask, &out});
  const QkvDims q = check_qkv(op, qkv, n_head);
  const AttentionDims d{q.batch, q.seq, q.embd, n_head, q.head_dim};
  if (out.shape() != Shape{d.B, d.T, d.C}) fail("{}: output {} should be [{}, {}, {}]", op, shape_str(out.shape()), d.B, d.T, d.C);
  check_key_mask(op, key_mask, d.B, mask_min_cols);
  return d;
}

// The key mask's part of the AttentionArgs (one struct for every device).
void set_key_mask(backend::AttentionArgs& a, const Tensor& key_mask) {
  if (!key_mask.defined()) return;
  a.key_mask = device_data<uint8_t>(key_mask);
  a.key_mask_stride = key_mask.dim(1);
}

template <typename F>
void attention_impl(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  const char* op = "causal_self_attention";
  AttentionDims d = check_attention(op, qkv, key_mask, n_head, out, qkv.ndim() == 3 ? qkv.dim(1) : 0);
  run_kernels<F>(op, qkv.device(), [&](auto k) {
    // Pointers as float* in element strides (attention_args.h): offsets are
    // taken on the element type's bytes.
    float* base = static_cast<float*>(qkv.raw());
    const size_t es = dtype_size(qkv.dtype());
    auto at = [&](float* p, int64_t elements) {
      return reinterpret_cast<float*>(reinterpret_cast<char*>(p) + elements * static_cast<int64_t>(es));
    };
    backend::AttentionArgs a;
    a.dtype = qkv.dtype();
    a.batch = d.B;
    a.n_head = d.H;
    a.head_dim = d.hd;
    a.q_len = a.kv_len = d.T;
    a.scale = scale;
    a.q = {base, d.T * 3 * d.C, d.hd, 3 * d.C};
    a.k = {at(base, d.C), d.T * 3 * d.C, d.hd, 3 * d.C};
    a.v = {at(base, 2 * d.C), d.T * 3 * d.C, d.hd, 3 * d.C};
    a.out = {static_cast<float*>(out.raw()), d.T * d.C, d.hd, d.C};
    set_key_mask(a, key_mask);
    decltype(k)::causal_attention(a);
  });
}

template <typename F>
void attention_cached_impl(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past, const Tensor& key_mask,
                           int64_t n_head, float scale, Tensor& out) {
  const char* op = "causal_self_attention_cached";
  if (cache_k.dtype() != qkv.dtype() || cache_v.dtype() != qkv.dtype())
    fail("{}: caches {} / {} do not match qkv {}", op, dtype_name(cache_k.dtype()), dtype_name(cache_v.dtype()),
         dtype_name(qkv.dtype()));
  same_device(op, {&qkv, &cache_k, &cache_v});
  const int64_t capacity = cache_k.ndim() == 4 ? cache_k.dim(2) : 0;
  AttentionDims d = check_attention(op, qkv, key_mask, n_head, out, capacity);
  const Shape cache_shape{d.B, d.H, capacity, d.hd};
  if (cache_k.shape() != cache_shape || cache_v.shape() != cache_shape)
    fail("{}: caches {} / {} should be [{}, {}, capacity, {}]", op, shape_str(cache_k.shape()),
         shape_str(cache_v.shape()), d.B, d.H, d.hd);
  if (past < 0 || past + d.T > capacity)
    fail("{}: {} cached + {} new positions exceed the cache capacity {}", op, past, d.T, capacity);
  run_kernels<F>(op, qkv.device(), [&](auto k) {
    using K = decltype(k);
    float* ck = static_cast<float*>(cache_k.raw());
    float* cv = static_cast<float*>(cache_v.raw());
    K::store_kv(qkv.raw(), qkv.dtype(), d.B, d.T, d.H, d.hd, ck, cv, capacity, past);
    backend::AttentionArgs a;
    a.dtype = qkv.dtype();
    a.batch = d.B;
    a.n_head = d.H;
    a.head_dim = d.hd;
    a.q_len = d.T;
    a.kv_len = past + d.T;
    a.scale = scale;
    a.q = {static_cast<float*>(qkv.raw()), d.T * 3 * d.C, d.hd, 3 * d.C};
    a.k = {ck, d.H * capacity * d.hd, capacity * d.hd, d.hd};
    a.v = {cv, d.H * capacity * d.hd, capacity * d.hd, d.hd};
    a.out = {static_cast<float*>(out.raw()), d.T * d.C, d.hd, d.C};
    set_key_mask(a, key_mask);
    K::causal_attention(a);
  });
}

// Each in-place elementwise op as a call on a kernel set.
constexpr auto kGeluNew = [](auto k, void* x, DType dtype, int64_t n) { decltype(k)::gelu_new(x, dtype, n); };
constexpr auto kGeluErf = [](auto k, void* x, DType dtype, int64_t n) { decltype(k)::gelu_erf(x, dtype, n); };

}  // namespace

Tensor scratch(const Shape& shape, DType dtype, Device device) {
  if (device == Device::CPU) return cpu::scratch_tensor(shape, dtype);
  // Device memory from the caching pool, not zero-filled (an Error where
  // this build has no such device).
  for (int64_t d : shape) GPT2Q_CHECK(d >= 0, "negative dimension in {}", shape_str(shape));
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor::from_storage(Storage::allocate(bytes, device, false), 0, shape, dtype);
}

void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  layer_norm_impl<Fast>(x, w, b, eps, y);
}
void gelu_new(Tensor& x) { unary_impl<Fast>("gelu_new", x, kGeluNew); }
void gelu_erf(Tensor& x) { unary_impl<Fast>("gelu", x, kGeluErf); }
void softmax_lastdim(Tensor& x) { softmax_impl<Fast>(x); }
void cast(const Tensor& x, Tensor& y) { cast_impl<Fast>(x, y); }

void token_nll(const Tensor& logits, const Tensor& targets, Tensor& nll) {
  const char* op = "token_nll";
  require_f32(op, "logits", logits);
  if (logits.ndim() != 2) fail("{}: logits must be [rows, vocab], got {}", op, shape_str(logits.shape()));
  const int64_t rows = logits.dim(0), V = logits.dim(1);
  if (targets.dtype() != DType::I64 || targets.numel() != rows || targets.device() != Device::CPU)
    fail("{}: targets must be I64 [{}] on the host", op, rows);
  if (nll.dtype() != DType::F64 || nll.numel() != rows || nll.device() != Device::CPU)
    fail("{}: nll must be F64 [{}] on the host", op, rows);
  for (int64_t r = 0; r < rows; ++r)
    if (targets.data<int64_t>()[r] < 0 || targets.data<int64_t>()[r] >= V)
      fail("{}: target {} is outside the vocabulary [0, {})", op, targets.data<int64_t>()[r], V);
  const Tensor t_here = to_device(targets, logits.device());
  Tensor out = ops::scratch({rows}, DType::F64, logits.device());
  run_kernels<Fast>(op, logits.device(), [&](auto k) {
    decltype(k)::token_nll(device_data<float>(logits), rows, V, device_data<int64_t>(t_here),
                           static_cast<double*>(out.raw()));
  });
  copy_bytes(nll.raw(), Device::CPU, out.raw(), out.device(), nll.nbytes());
}
void add_inplace(Tensor& x, const Tensor& y) { add_impl<Fast>(x, y); }
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out) {
  embedding_impl<Fast>(ids, positions, wte, wpe, out);
}
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_impl<Fast>(qkv, key_mask, n_head, scale, out);
}
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_cached_impl<Fast>(qkv, cache_k, cache_v, past, key_mask, n_head, scale, out);
}

namespace reference {
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  layer_norm_impl<Reference>(x, w, b, eps, y);
}
void gelu_new(Tensor& x) { unary_impl<Reference>("gelu_new", x, kGeluNew); }
void gelu_erf(Tensor& x) { unary_impl<Reference>("gelu", x, kGeluErf); }
void softmax_lastdim(Tensor& x) { softmax_impl<Reference>(x); }
void add_inplace(Tensor& x, const Tensor& y) { add_impl<Reference>(x, y); }
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out) {
  embedding_impl<Reference>(ids, positions, wte, wpe, out);
}
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_impl<Reference>(qkv, key_mask, n_head, scale, out);
}
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_cached_impl<Reference>(qkv, cache_k, cache_v, past, key_mask, n_head, scale, out);
}
}  // namespace reference

}  // namespace gpt2q::ops
