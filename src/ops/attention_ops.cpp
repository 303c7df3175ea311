// The attention ops over sequence layouts and KV caches with device state
// (ops.h): the shared checks once, then the tensor-core kernels where they
// apply (CUDA, F16 / BF16, head_dim 32 / 64 / 128) and the generic kernels
// of each device's set otherwise, one sequence at a time.
#include <algorithm>

#include "ops/kernel_sets.h"
#include "ops/op_checks.h"
#include "ops/ops.h"

#ifdef GPT2Q_CUDA
#include "backend/cuda/decode_attention.h"
#include "backend/cuda/flash_attention.h"
#endif

namespace gpt2q::ops {

namespace {

using namespace detail;  // op_checks.h, kernel_sets.h

// A host tensor of the values, on `device`.
Tensor upload_i32(const std::vector<int32_t>& v, Device device) {
  return to_device(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), device);
}

void finish_layout(SequenceLayout& l, Device device) {
  l.batch = static_cast<int64_t>(l.offset.size());
  for (size_t b = 0; b < l.rows.size(); ++b) {
    if (l.valid[b] < 1 || l.valid[b] > l.rows[b])
      fail("sequence layout: sequence {} has {} valid of {} rows", b, l.valid[b], l.rows[b]);
    l.max_rows = std::max<int64_t>(l.max_rows, l.rows[b]);
    l.total_rows = std::max<int64_t>(l.total_rows, int64_t{l.offset[b]} + l.rows[b]);
  }
  if (device == Device::CPU) return;
  l.offset_d = upload_i32(l.offset, device);
  l.rows_d = upload_i32(l.rows, device);
  l.valid_d = upload_i32(l.valid, device);
  bool padded = false;
  for (size_t b = 0; b < l.rows.size(); ++b) padded |= l.valid[b] < l.rows[b];
  if (!padded) return;
  Tensor mask = Tensor::empty({l.batch, l.max_rows}, DType::U8);
  for (int64_t b = 0; b < l.batch; ++b)
    for (int64_t t = 0; t < l.valid[b]; ++t) mask.data<uint8_t>()[b * l.max_rows + t] = 1;
  l.mask_d = to_device(mask, device);
}

int32_t as_i32(int64_t v, const char* what) {
  if (v < 0 || v > INT32_MAX) fail("sequence layout: {} {} is out of range", what, v);
  return static_cast<int32_t>(v);
}

// Sequence b at rows b·max_rows, every one max_rows long: a padded [B, T]
// batch, which the generic kernels take in one call.
bool uniform(const SequenceLayout& l) {
  for (int64_t b = 0; b < l.batch; ++b)
    if (l.offset[b] != b * l.max_rows || l.rows[b] != l.max_rows) return false;
  return true;
}

// The generic kernels of a set: one batched call for a padded layout (the
// key mask from `valid`), else one sequence at a time (q_len = kv_len =
// rows, the first `valid` keys unmasked).
template <typename K>
void attention_generic(const Tensor& qkv, const SequenceLayout& l, int64_t n_head, float scale, Tensor& out) {
  const int64_t C = qkv.dim(-1) / 3, hd = C / n_head;
  const size_t es = dtype_size(qkv.dtype());
  char* base = static_cast<char*>(qkv.raw());
  char* obase = static_cast<char*>(out.raw());
  auto at = [&](char* p, int64_t elements) { return reinterpret_cast<float*>(p + elements * static_cast<int64_t>(es)); };
  if (uniform(l) && l.batch > 0) {
    const int64_t T = l.max_rows;
    Tensor host_mask;
    backend::AttentionArgs a;
    a.dtype = qkv.dtype();
    a.batch = l.batch;
    a.n_head = n_head;
    a.head_dim = hd;
    a.q_len = a.kv_len = T;
    a.scale = scale;
    a.q = {at(base, 0), T * 3 * C, hd, 3 * C};
    a.k = {at(base, C), T * 3 * C, hd, 3 * C};
    a.v = {at(base, 2 * C), T * 3 * C, hd, 3 * C};
    a.out = {at(obase, 0), T * C, hd, C};
    bool padded = false;
    for (int64_t b = 0; b < l.batch; ++b) padded |= l.valid[b] < T;
    if (padded) {
      if (qkv.device() == Device::CPU) {
        host_mask = Tensor::empty({l.batch, T}, DType::U8);
        for (int64_t b = 0; b < l.batch; ++b)
          for (int64_t t = 0; t < l.valid[b]; ++t) host_mask.data<uint8_t>()[b * T + t] = 1;
        a.key_mask = host_mask.data<uint8_t>();
      } else {
        a.key_mask = static_cast<const uint8_t*>(l.mask_d.raw());
      }
      a.key_mask_stride = T;
    }
    K::causal_attention(a);
    return;
  }
  for (int64_t b = 0; b < l.batch; ++b) {
    const int64_t off = l.offset[b], rows = l.rows[b];
    Tensor host_mask;
    backend::AttentionArgs a;
    a.dtype = qkv.dtype();
    a.batch = 1;
    a.n_head = n_head;
    a.head_dim = hd;
    a.q_len = a.kv_len = rows;
    a.scale = scale;
    a.q = {at(base, off * 3 * C), 0, hd, 3 * C};
    a.k = {at(base, off * 3 * C + C), 0, hd, 3 * C};
    a.v = {at(base, off * 3 * C + 2 * C), 0, hd, 3 * C};
    a.out = {at(obase, off * C), 0, hd, C};
    if (l.valid[b] < rows) {
      if (qkv.device() == Device::CPU) {
        host_mask = Tensor::empty({1, rows}, DType::U8);
        for (int64_t t = 0; t < l.valid[b]; ++t) host_mask.data<uint8_t>()[t] = 1;
        a.key_mask = host_mask.data<uint8_t>();
      } else {
        a.key_mask = static_cast<const uint8_t*>(l.mask_d.raw()) + b * l.max_rows;
      }
      a.key_mask_stride = rows;
    }
    K::causal_attention(a);
  }
}

}  // namespace

SequenceLayout SequenceLayout::padded(const std::vector<int64_t>& lengths, int64_t seq, Device device) {
  SequenceLayout l;
  for (size_t b = 0; b < lengths.size(); ++b) {
    l.offset.push_back(as_i32(static_cast<int64_t>(b) * seq, "offset"));
    l.rows.push_back(as_i32(seq, "rows"));
    l.valid.push_back(as_i32(lengths[b], "length"));
  }
  finish_layout(l, device);
  return l;
}

SequenceLayout SequenceLayout::packed(const std::vector<int64_t>& lengths, Device device) {
  SequenceLayout l;
  int64_t at = 0;
  for (int64_t n : lengths) {
    l.offset.push_back(as_i32(at, "offset"));
    l.rows.push_back(as_i32(n, "length"));
    l.valid.push_back(as_i32(n, "length"));
    at += n;
  }
  finish_layout(l, device);
  return l;
}

void causal_self_attention(const Tensor& qkv, const SequenceLayout& l, int64_t n_head, float scale, Tensor& out) {
  const char* op = "causal_self_attention";
  require_float_type(op, "qkv", qkv);
  if (out.dtype() != qkv.dtype()) fail("{}: out is {} but qkv {}", op, dtype_name(out.dtype()), dtype_name(qkv.dtype()));
  same_device(op, {&qkv, &out});
  const int64_t three_c = last_dim(qkv), rows = rows_of(qkv);
  if (three_c % 3 != 0) fail("{}: qkv {} is not [rows, 3C]", op, shape_str(qkv.shape()));
  const int64_t C = three_c / 3;
  if (n_head <= 0 || C % n_head != 0) fail("{}: n_head {} does not divide n_embd {}", op, n_head, C);
  if (rows_of(out) != rows || last_dim(out) != C)
    fail("{}: output {} should be [{}, {}]", op, shape_str(out.shape()), rows, C);
  if (l.total_rows > rows) fail("{}: the layout covers {} rows, qkv has {}", op, l.total_rows, rows);
  if (qkv.device() != Device::CPU && !l.offset_d.defined())
    fail("{}: the sequence layout was made for the CPU, the tensors are on {}", op, device_name(qkv.device()));
#ifdef GPT2Q_CUDA
  if (qkv.device() == Device::CUDA && cuda::flash_attention_supported(qkv.dtype(), C / n_head)) {
    cuda::flash_attention(qkv.raw(), out.raw(), qkv.dtype(), device_data<int32_t>(l.offset_d),
                          device_data<int32_t>(l.rows_d), device_data<int32_t>(l.valid_d), l.batch, l.max_rows,
                          n_head, C / n_head, scale, static_cast<cudaStream_t>(cuda_stream()));
    return;
  }
#endif
  run_kernels<Fast>(op, qkv.device(),
                    [&](auto k) { attention_generic<decltype(k)>(qkv, l, n_head, scale, out); });
}

CacheKernelState make_cache_kernel_state(int64_t batch, int64_t n_head, int64_t head_dim, int64_t capacity,
                                         DType dtype, Device device) {
  CacheKernelState s;
#ifdef GPT2Q_CUDA
  if (device == Device::CUDA && cuda::decode_attention_supported(dtype, head_dim, 1)) {
    s.past = Tensor::empty({1}, DType::I32, device);
    const size_t bytes = cuda::decode_attention_scratch_bytes(batch, n_head, head_dim, capacity);
    s.scratch = Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::F32, device);  // zero-filled
  }
#else
  (void)batch, (void)n_head, (void)head_dim, (void)capacity, (void)dtype, (void)device;
#endif
  return s;
}

void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out,
                                  const CacheKernelState& state) {
#ifdef GPT2Q_CUDA
  const int64_t T = qkv.ndim() == 3 ? qkv.dim(1) : 0, C = qkv.ndim() == 3 ? qkv.dim(2) / 3 : 0;
  const bool fast = state.past.defined() && qkv.device() == Device::CUDA && n_head > 0 && C % n_head == 0 &&
                    cuda::decode_attention_supported(qkv.dtype(), C / n_head, T);
  if (fast) {
    const char* op = "causal_self_attention_cached";
    // The checks of the general path, then the device-state kernels.
    require_float_type(op, "qkv", qkv);
    same_device(op, {&qkv, &cache_k, &cache_v, &key_mask, &out, &state.past, &state.scratch});
    const int64_t B = qkv.dim(0), hd = C / n_head, capacity = cache_k.ndim() == 4 ? cache_k.dim(2) : 0;
    const Shape cache_shape{B, n_head, capacity, hd};
    if (cache_k.shape() != cache_shape || cache_v.shape() != cache_shape || cache_k.dtype() != qkv.dtype() ||
        cache_v.dtype() != qkv.dtype())
      fail("{}: caches {} / {} should be {} [{}, {}, capacity, {}]", op, shape_str(cache_k.shape()),
           shape_str(cache_v.shape()), dtype_name(qkv.dtype()), B, n_head, hd);
    if (out.shape() != Shape{B, T, C} || out.dtype() != qkv.dtype())
      fail("{}: output {} should be [{}, {}, {}]", op, shape_str(out.shape()), B, T, C);
    if (past < 0 || past + T > capacity)
      fail("{}: {} cached + {} new positions exceed the cache capacity {}", op, past, T, capacity);
    check_key_mask(op, key_mask, B, capacity);
    if (key_mask.defined() && key_mask.dim(1) != capacity)
      fail("{}: the key mask must have the cache's {} columns", op, capacity);
    const size_t need = cuda::decode_attention_scratch_bytes(B, n_head, hd, capacity);
    if (state.scratch.nbytes() < need || state.past.numel() != 1 || state.past.dtype() != DType::I32)
      fail("{}: the cache's kernel state was made for another shape", op);
    auto stream = static_cast<cudaStream_t>(cuda_stream());
    const auto* past_d = static_cast<const int32_t*>(state.past.raw());
    cuda::decode_store_kv(qkv.raw(), qkv.dtype(), cache_k.raw(), cache_v.raw(), past_d, B, T, n_head, hd, capacity,
                          stream);
    cuda::decode_attention(qkv.raw(), cache_k.raw(), cache_v.raw(),
                           key_mask.defined() ? static_cast<const uint8_t*>(key_mask.raw()) : nullptr, past_d,
                           out.raw(), static_cast<float*>(state.scratch.raw()), qkv.dtype(), B, n_head, hd, T,
                           capacity, scale, stream);
    return;
  }
#else
  (void)state;
#endif
  causal_self_attention_cached(qkv, cache_k, cache_v, past, key_mask, n_head, scale, out);
}

}  // namespace gpt2q::ops
