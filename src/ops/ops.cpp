// Shape checks and device dispatch for ops.h and ops/reference.h. Both are
// written once, as templates over a kernel set (fast or reference), so the
// checks cannot drift apart.
#include "ops/ops.h"

#include <cmath>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/reference_ops.h"
#include "ops/op_checks.h"
#include "ops/reference.h"

namespace gpt2q::ops {

namespace {

using namespace detail;  // op_checks.h

struct FastCpu {
  static constexpr auto linear = cpu::linear;
  static void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c) {
    cpu::sgemm_nt(m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
  }
  static constexpr auto layer_norm = cpu::layer_norm;
  static constexpr auto gelu_new = cpu::gelu_new;
  static constexpr auto gelu_erf = cpu::gelu_erf;
  static constexpr auto softmax_rows = cpu::softmax_rows;
  static constexpr auto add_inplace = cpu::add_inplace;
  static constexpr auto embedding = cpu::embedding;
  static constexpr auto causal_attention = cpu::causal_attention;
};

struct ReferenceCpu {
  static constexpr auto linear = cpu::reference::linear;
  static constexpr auto matmul_nt = cpu::reference::matmul_nt;
  static constexpr auto layer_norm = cpu::reference::layer_norm;
  static constexpr auto gelu_new = cpu::reference::gelu_new;
  static constexpr auto gelu_erf = cpu::reference::gelu_erf;
  static constexpr auto softmax_rows = cpu::reference::softmax_rows;
  static constexpr auto add_inplace = cpu::reference::add_inplace;
  static constexpr auto embedding = cpu::reference::embedding;
  static constexpr auto causal_attention = cpu::reference::causal_attention;
};


template <typename K>
void linear_impl(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) {
  const char* op = "linear";
  require_f32(op, "x", x);
  require_f32(op, "w", w);
  require_f32(op, "y", y);
  if (b.defined()) require_f32(op, "b", b);
  same_device(op, {&x, &w, &b, &y});
  if (w.ndim() != 2) fail("{}: weight must be 2-D [in, out], got {}", op, shape_str(w.shape()));
  const int64_t in = w.dim(0), out = w.dim(1), rows = rows_of(x);
  if (last_dim(x) != in) fail("{}: x {} does not fit weight {}", op, shape_str(x.shape()), shape_str(w.shape()));
  if (rows_of(y) != rows || last_dim(y) != out)
    fail("{}: output {} should be [{}, {}]", op, shape_str(y.shape()), rows, out);
  if (b.defined() && b.numel() != out) fail("{}: bias {} should have {} values", op, shape_str(b.shape()), out);
  dispatch(op, x.device(), [&] {
    K::linear(x.data<float>(), rows, in, w.data<float>(), b.defined() ? b.data<float>() : nullptr, out,
              y.data<float>());
  });
}

template <typename K>
void matmul_nt_impl(const Tensor& a, const Tensor& b, Tensor& c) {
  const char* op = "matmul_nt";
  require_f32(op, "a", a);
  require_f32(op, "b", b);
  require_f32(op, "c", c);
  same_device(op, {&a, &b, &c});
  if (b.ndim() != 2) fail("{}: b must be 2-D [n, k], got {}", op, shape_str(b.shape()));
  const int64_t m = rows_of(a), k = last_dim(a), n = b.dim(0);
  if (b.dim(1) != k) fail("{}: a {} does not fit b {}", op, shape_str(a.shape()), shape_str(b.shape()));
  if (rows_of(c) != m || last_dim(c) != n) fail("{}: output {} should be [{}, {}]", op, shape_str(c.shape()), m, n);
  dispatch(op, a.device(), [&] { K::matmul_nt(a.data<float>(), b.data<float>(), m, k, n, c.data<float>()); });
}

template <typename K>
void layer_norm_impl(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  const char* op = "layer_norm";
  require_f32(op, "x", x);
  require_f32(op, "weight", w);
  require_f32(op, "bias", b);
  require_f32(op, "y", y);
  same_device(op, {&x, &w, &b, &y});
  const int64_t cols = last_dim(x);
  if (w.numel() != cols || b.numel() != cols)
    fail("{}: weight {} / bias {} do not match {} features", op, shape_str(w.shape()), shape_str(b.shape()), cols);
  if (y.numel() != x.numel() || last_dim(y) != cols)
    fail("{}: output {} does not match input {}", op, shape_str(y.shape()), shape_str(x.shape()));
  dispatch(op, x.device(), [&] {
    K::layer_norm(x.data<float>(), rows_of(x), cols, w.data<float>(), b.data<float>(), eps, y.data<float>());
  });
}

template <typename K>
void unary_impl(const char* op, Tensor& x, void (*fn)(float*, int64_t)) {
  require_f32(op, "x", x);
  dispatch(op, x.device(), [&] { fn(x.data<float>(), x.numel()); });
}

template <typename K>
void softmax_impl(Tensor& x) {
  require_f32("softmax", "x", x);
  dispatch("softmax", x.device(), [&] { K::softmax_rows(x.data<float>(), rows_of(x), last_dim(x)); });
}

template <typename K>
void add_impl(Tensor& x, const Tensor& y) {
  const char* op = "add";
  require_f32(op, "x", x);
  require_f32(op, "y", y);
  same_device(op, {&x, &y});
  if (x.shape() != y.shape()) fail("{}: shapes {} and {} differ", op, shape_str(x.shape()), shape_str(y.shape()));
  dispatch(op, x.device(), [&] { K::add_inplace(x.data<float>(), y.data<float>(), x.numel()); });
}

template <typename K>
void embedding_impl(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out) {
  const char* op = "embedding";
  require_f32(op, "wte", wte);
  require_f32(op, "wpe", wpe);
  require_f32(op, "out", out);
  same_device(op, {&wte, &wpe, &out});
  const int64_t rows = check_embedding_args(op, ids, positions, wte, wpe), cols = wte.dim(1);
  if (out.numel() != rows * cols || last_dim(out) != cols)
    fail("{}: output {} should be [{}, {}]", op, shape_str(out.shape()), rows, cols);
  const int32_t* id = ids.data<int32_t>();
  const int64_t* pos = positions.data<int64_t>();
  check_embedding_indices(id, pos, rows, wte.dim(0), wpe.dim(0));
  dispatch(op, out.device(), [&] {
    K::embedding(id, pos, rows, wte.data<float>(), wpe.data<float>(), cols, out.data<float>());
  });
}

struct AttentionDims {
  int64_t B, T, C, H, hd;
};

AttentionDims check_attention(const char* op, const Tensor& qkv, const Tensor& key_mask, int64_t n_head,
                              const Tensor& out, int64_t mask_min_cols) {
  require_f32(op, "qkv", qkv);
  require_f32(op, "out", out);
  same_device(op, {&qkv, &key_mask, &out});
  const QkvDims q = check_qkv(op, qkv, n_head);
  const AttentionDims d{q.batch, q.seq, q.embd, n_head, q.head_dim};
  if (out.shape() != Shape{d.B, d.T, d.C}) fail("{}: output {} should be [{}, {}, {}]", op, shape_str(out.shape()), d.B, d.T, d.C);
  check_key_mask(op, key_mask, d.B, mask_min_cols);
  return d;
}

template <typename K>
void attention_impl(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  const char* op = "causal_self_attention";
  AttentionDims d = check_attention(op, qkv, key_mask, n_head, out, qkv.ndim() == 3 ? qkv.dim(1) : 0);
  dispatch(op, qkv.device(), [&] {
    float* base = qkv.data<float>();
    cpu::AttentionArgs a;
    a.batch = d.B;
    a.n_head = d.H;
    a.head_dim = d.hd;
    a.q_len = a.kv_len = d.T;
    a.scale = scale;
    a.q = {base, d.T * 3 * d.C, d.hd, 3 * d.C};
    a.k = {base + d.C, d.T * 3 * d.C, d.hd, 3 * d.C};
    a.v = {base + 2 * d.C, d.T * 3 * d.C, d.hd, 3 * d.C};
    a.out = {out.data<float>(), d.T * d.C, d.hd, d.C};
    if (key_mask.defined()) {
      a.key_mask = key_mask.data<uint8_t>();
      a.key_mask_stride = key_mask.dim(1);
    }
    K::causal_attention(a);
  });
}

template <typename K>
void attention_cached_impl(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past, const Tensor& key_mask,
                           int64_t n_head, float scale, Tensor& out) {
  const char* op = "causal_self_attention_cached";
  require_f32(op, "cache_k", cache_k);
  require_f32(op, "cache_v", cache_v);
  same_device(op, {&qkv, &cache_k, &cache_v});
  const int64_t capacity = cache_k.ndim() == 4 ? cache_k.dim(2) : 0;
  AttentionDims d = check_attention(op, qkv, key_mask, n_head, out, capacity);
  const Shape cache_shape{d.B, d.H, capacity, d.hd};
  if (cache_k.shape() != cache_shape || cache_v.shape() != cache_shape)
    fail("{}: caches {} / {} should be [{}, {}, capacity, {}]", op, shape_str(cache_k.shape()),
         shape_str(cache_v.shape()), d.B, d.H, d.hd);
  if (past < 0 || past + d.T > capacity)
    fail("{}: {} cached + {} new positions exceed the cache capacity {}", op, past, d.T, capacity);
  dispatch(op, qkv.device(), [&] {
    float* ck = cache_k.data<float>();
    float* cv = cache_v.data<float>();
    cpu::store_kv(qkv.data<float>(), d.B, d.T, d.H, d.hd, ck, cv, capacity, past);
    cpu::AttentionArgs a;
    a.batch = d.B;
    a.n_head = d.H;
    a.head_dim = d.hd;
    a.q_len = d.T;
    a.kv_len = past + d.T;
    a.scale = scale;
    a.q = {qkv.data<float>(), d.T * 3 * d.C, d.hd, 3 * d.C};
    a.k = {ck, d.H * capacity * d.hd, capacity * d.hd, d.hd};
    a.v = {cv, d.H * capacity * d.hd, capacity * d.hd, d.hd};
    a.out = {out.data<float>(), d.T * d.C, d.hd, d.C};
    if (key_mask.defined()) {
      a.key_mask = key_mask.data<uint8_t>();
      a.key_mask_stride = key_mask.dim(1);
    }
    K::causal_attention(a);
  });
}

}  // namespace

Tensor scratch(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  dispatch("scratch", device, [&] { t = cpu::scratch_tensor(shape, dtype); });
  return t;
}

void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) { linear_impl<FastCpu>(x, w, b, y); }
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c) { matmul_nt_impl<FastCpu>(a, b, c); }
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  layer_norm_impl<FastCpu>(x, w, b, eps, y);
}
void gelu_new(Tensor& x) { unary_impl<FastCpu>("gelu_new", x, FastCpu::gelu_new); }
void gelu_erf(Tensor& x) { unary_impl<FastCpu>("gelu", x, FastCpu::gelu_erf); }
void softmax_lastdim(Tensor& x) { softmax_impl<FastCpu>(x); }
void add_inplace(Tensor& x, const Tensor& y) { add_impl<FastCpu>(x, y); }
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out) {
  embedding_impl<FastCpu>(ids, positions, wte, wpe, out);
}
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_impl<FastCpu>(qkv, key_mask, n_head, scale, out);
}
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_cached_impl<FastCpu>(qkv, cache_k, cache_v, past, key_mask, n_head, scale, out);
}

namespace reference {
void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) { linear_impl<ReferenceCpu>(x, w, b, y); }
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c) { matmul_nt_impl<ReferenceCpu>(a, b, c); }
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  layer_norm_impl<ReferenceCpu>(x, w, b, eps, y);
}
void gelu_new(Tensor& x) { unary_impl<ReferenceCpu>("gelu_new", x, ReferenceCpu::gelu_new); }
void gelu_erf(Tensor& x) { unary_impl<ReferenceCpu>("gelu", x, ReferenceCpu::gelu_erf); }
void softmax_lastdim(Tensor& x) { softmax_impl<ReferenceCpu>(x); }
void add_inplace(Tensor& x, const Tensor& y) { add_impl<ReferenceCpu>(x, y); }
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out) {
  embedding_impl<ReferenceCpu>(ids, positions, wte, wpe, out);
}
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_impl<ReferenceCpu>(qkv, key_mask, n_head, scale, out);
}
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out) {
  attention_cached_impl<ReferenceCpu>(qkv, cache_k, cache_v, past, key_mask, n_head, scale, out);
}
}  // namespace reference

}  // namespace gpt2q::ops
