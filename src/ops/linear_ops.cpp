// The linear-layer ops (ops.h): dense and packed products with their
// epilogues, and row gathers. The checks are written once per op, as
// templates over a kernel family (kernel_sets.h); each op fills the
// device-neutral arguments of backend/linear_args.h for the kernel set of
// the tensors' device.
#include <vector>

#include "backend/cpu/bf16_linear.h"
#include "ops/kernel_sets.h"
#include "ops/op_checks.h"
#include "ops/ops.h"
#include "ops/reference.h"

namespace gpt2q::ops {

namespace {

using namespace detail;  // op_checks.h, kernel_sets.h

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

void require_float(const char* op, const char* what, const Tensor& t) {
  if (!t.defined()) fail("{}: {} is undefined", op, what);
  if (!is_float(t.dtype())) fail("{}: {} must be F32, F16 or BF16, got {}", op, what, dtype_name(t.dtype()));
}

void check_epilogue(const char* op, const Epilogue& e) {
  if (e.accumulate && e.activation != Activation::none)
    fail("{}: an accumulating product takes no activation", op);
}

// The activations of a product: x [..., in] -> y [..., out].
int64_t check_rows(const char* op, const Tensor& x, const Tensor& y, int64_t in, int64_t out, const Shape& w_shape) {
  require_float(op, "x", x);
  require_float(op, "y", y);
  const int64_t rows = rows_of(x);
  if (last_dim(x) != in) fail("{}: x {} does not fit weight {}", op, shape_str(x.shape()), shape_str(w_shape));
  if (rows_of(y) != rows || last_dim(y) != out)
    fail("{}: output {} should be [{}, {}]", op, shape_str(y.shape()), rows, out);
  return rows;
}

// The bias, when given: F32, F16 or BF16 [out] (the CPU kernels take F32).
const void* bias_ptr(const char* op, const Tensor& b, int64_t out) {
  if (!b.defined()) return nullptr;
  require_float(op, "b", b);
  if (b.numel() != out) fail("{}: bias {} should have {} values", op, shape_str(b.shape()), out);
  return b.raw();
}

// The arguments every dense product shares: activations, bias, output and
// epilogue, checked; the caller sets the weight.
backend::LinearArgs dense_args(const char* op, const Tensor& x, const Tensor& b, Tensor& y, int64_t in, int64_t out,
                               const Shape& w_shape, Epilogue e) {
  check_epilogue(op, e);
  backend::LinearArgs a;
  a.rows = check_rows(op, x, y, in, out, w_shape);
  a.x = x.raw();
  a.x_dtype = x.dtype();
  a.in = in;
  a.out = out;
  a.bias = bias_ptr(op, b, out);
  a.bias_dtype = b.defined() ? b.dtype() : DType::F32;
  a.y = y.raw();
  a.y_dtype = y.dtype();
  a.epilogue = e;
  return a;
}

template <typename F>
void linear_impl(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue e, bool w_out_in) {
  const char* op = w_out_in ? "linear_nt" : "linear";
  require_float(op, "w", w);
  same_device(op, {&x, &w, &b, &y});
  if (w.ndim() != 2)
    fail("{}: weight must be 2-D {}, got {}", op, w_out_in ? "[n, k]" : "[in, out]", shape_str(w.shape()));
  const int64_t in = w_out_in ? w.dim(1) : w.dim(0), out = w_out_in ? w.dim(0) : w.dim(1);
  backend::LinearArgs a = dense_args(op, x, b, y, in, out, w.shape(), e);
  a.w = w.raw();
  a.w_dtype = w.dtype();
  a.w_out_in = w_out_in;
  run_kernels<F>(op, x.device(), [&](auto k) { decltype(k)::linear_op(a); });
}

template <typename F>
void linear_bf16_impl(const Tensor& x, const Tensor& packed, int64_t in, int64_t out, const Tensor& b, Tensor& y,
                      Epilogue e) {
  const char* op = "linear_bf16";
  same_device(op, {&x, &packed, &b, &y});
  if (x.device() != Device::CPU) fail("{}: the packed bf16 weight is the CPU's format, x is on {}", op,
                                       device_name(x.device()));
  if (!packed.defined() || packed.dtype() != DType::BF16 || packed.numel() != cpu::bf16_linear_packed_elems(in, out))
    fail("{}: the weight is not a packed bf16 [{}, {}] (pack_linear_bf16)", op, in, out);
  backend::LinearArgs a = dense_args(op, x, b, y, in, out, {in, out}, e);
  a.w = packed.raw();
  a.w_dtype = DType::BF16;
  a.w_bf16_packed = true;
  run_kernels<F>(op, x.device(), [&](auto k) { decltype(k)::linear_op(a); });
}

template <typename F>
void quant_linear_impl(const Tensor& x, const QuantizedTensor& w, const Tensor& b, Tensor& y,
                       const QuantLinearOptions& o, Epilogue e) {
  const char* op = "quant_linear";
  if (!w.defined()) fail("{}: the weight is undefined", op);
  same_device(op, {&x, &w.codes, &b, &y});
  check_epilogue(op, e);
  if (!(o.llm_int8_threshold >= 0.0f)) fail("{}: LLM.int8 threshold must be >= 0, got {}", op, o.llm_int8_threshold);
  backend::QuantLinearArgs a;
  a.rows = check_rows(op, x, y, w.in(), w.out(), {w.out(), w.in()});
  a.x = x.raw();
  a.x_dtype = x.dtype();
  a.w = w.view();
  a.bias = bias_ptr(op, b, w.out());
  a.bias_dtype = b.defined() ? b.dtype() : DType::F32;
  a.y = y.raw();
  a.y_dtype = y.dtype();
  a.epilogue = e;
  a.compute = o.compute;
  a.llm_int8_threshold = o.llm_int8_threshold;
  a.llm_int8_fp32_epilogue = o.llm_int8_fp32_epilogue;
  if (a.rows == 0) return;
  run_kernels<F>(op, x.device(), [&](auto k) { decltype(k)::quant_linear_op(a); });
}

// Indices are checked on the host (copied down when on a device: a small
// synchronising copy), then read where the table is.
void check_gather_out(const char* op, const Tensor& out, int64_t n, int64_t cols) {
  require_f32(op, "out", out);
  if (out.numel() != n * cols || last_dim(out) != cols)
    fail("{}: output {} should be [{}, {}]", op, shape_str(out.shape()), n, cols);
}

// The gathers read indices already checked and on the output's device.
template <typename F>
void gather_impl(const Tensor& table, const CheckedIndices& idx, Tensor& out, bool accumulate) {
  const char* op = "gather_rows";
  require_float(op, "table", table);
  same_device(op, {&table, &out, &idx.tensor()});
  if (table.ndim() != 2) fail("{}: table must be 2-D, got {}", op, shape_str(table.shape()));
  if (idx.bound() > table.dim(0))
    fail("{}: indices checked for {} rows, the table has {}", op, idx.bound(), table.dim(0));
  check_gather_out(op, out, idx.size(), table.dim(1));
  backend::GatherArgs a;
  a.table = table.raw();
  a.table_dtype = table.dtype();
  a.table_rows = table.dim(0);
  a.cols = table.dim(1);
  a.idx = device_data<int64_t>(idx.tensor());
  a.n = idx.size();
  a.out = device_data<float>(out);
  a.accumulate = accumulate;
  run_kernels<F>(op, out.device(), [&](auto k) { decltype(k)::gather_rows_op(a); });
}

template <typename F>
void gather_packed_impl(const QuantizedTensor& table, const CheckedIndices& idx, Tensor& out, bool accumulate) {
  const char* op = "gather_rows";
  if (!table.defined()) fail("{}: the table is undefined", op);
  same_device(op, {&table.codes, &out, &idx.tensor()});
  if (idx.bound() > table.out())
    fail("{}: indices checked for {} rows, the table has {}", op, idx.bound(), table.out());
  check_gather_out(op, out, idx.size(), table.in());
  const qformat::WeightView view = table.view();
  backend::GatherArgs a;
  a.packed = &view;
  a.table_rows = table.out();
  a.cols = table.in();
  a.idx = device_data<int64_t>(idx.tensor());
  a.n = idx.size();
  a.out = device_data<float>(out);
  a.accumulate = accumulate;
  run_kernels<F>(op, out.device(), [&](auto k) { decltype(k)::gather_rows_op(a); });
}

// Host indices (I64, on any device): checked on the host, then uploaded.
CheckedIndices checked_indices(const char* op, const Tensor& idx, int64_t table_rows, Device device) {
  if (idx.dtype() != DType::I64) fail("{}: indices must be I64, got {}", op, dtype_name(idx.dtype()));
  const Tensor host = to_device(idx, Device::CPU);
  const int64_t* p = host.data<int64_t>();
  std::vector<int64_t> values(p, p + host.numel());
  for (int64_t v : values)
    if (v < 0 || v >= table_rows) fail("{}: index {} is out of range for a table of {} rows", op, v, table_rows);
  if (values.empty()) return {};
  return CheckedIndices(values, table_rows, device);
}

// A gather with host indices: the table's own errors first, then the indices'.
template <typename F>
void gather_host_indices(const Tensor& table, const Tensor& idx, Tensor& out, bool accumulate) {
  const char* op = "gather_rows";
  require_float(op, "table", table);
  if (table.ndim() != 2) fail("{}: table must be 2-D, got {}", op, shape_str(table.shape()));
  check_gather_out(op, out, idx.numel(), table.dim(1));
  const CheckedIndices checked = checked_indices(op, idx, table.dim(0), out.device());
  if (checked.size()) gather_impl<F>(table, checked, out, accumulate);
}
template <typename F>
void gather_host_indices(const QuantizedTensor& table, const Tensor& idx, Tensor& out, bool accumulate) {
  const char* op = "gather_rows";
  if (!table.defined()) fail("{}: the table is undefined", op);
  check_gather_out(op, out, idx.numel(), table.in());
  const CheckedIndices checked = checked_indices(op, idx, table.out(), out.device());
  if (checked.size()) gather_packed_impl<F>(table, checked, out, accumulate);
}

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue) {
  linear_impl<Fast>(x, w, b, y, epilogue, false);
}
void linear_nt(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue) {
  linear_impl<Fast>(x, w, b, y, epilogue, true);
}
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c) { linear_impl<Fast>(a, b, Tensor(), c, {}, true); }
Tensor pack_linear_bf16(const Tensor& w) {
  const char* op = "pack_linear_bf16";
  require_float(op, "w", w);
  if (w.device() != Device::CPU) fail("{}: the weight must be on the CPU, it is on {}", op, device_name(w.device()));
  if (w.ndim() != 2) fail("{}: weight must be 2-D [in, out], got {}", op, shape_str(w.shape()));
  Tensor packed = Tensor::empty({cpu::bf16_linear_packed_elems(w.dim(0), w.dim(1))}, DType::BF16);
  cpu::bf16_linear_pack_weight(w.raw(), w.dtype(), w.dim(0), w.dim(1), packed.data<uint16_t>());
  return packed;
}
void linear_bf16(const Tensor& x, const Tensor& packed, int64_t in, int64_t out, const Tensor& b, Tensor& y,
                 Epilogue epilogue) {
  linear_bf16_impl<Fast>(x, packed, in, out, b, y, epilogue);
}
void quant_linear(const Tensor& x, const QuantizedTensor& w, const Tensor& b, Tensor& y,
                  const QuantLinearOptions& options, Epilogue epilogue) {
  quant_linear_impl<Fast>(x, w, b, y, options, epilogue);
}
void gather_rows(const Tensor& table, const Tensor& idx, Tensor& out, bool accumulate) {
  gather_host_indices<Fast>(table, idx, out, accumulate);
}
void gather_rows(const QuantizedTensor& table, const Tensor& idx, Tensor& out, bool accumulate) {
  gather_host_indices<Fast>(table, idx, out, accumulate);
}
void gather_rows(const Tensor& table, const CheckedIndices& idx, Tensor& out, bool accumulate) {
  gather_impl<Fast>(table, idx, out, accumulate);
}
void gather_rows(const QuantizedTensor& table, const CheckedIndices& idx, Tensor& out, bool accumulate) {
  gather_packed_impl<Fast>(table, idx, out, accumulate);
}

namespace reference {
void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue) {
  linear_impl<Reference>(x, w, b, y, epilogue, false);
}
void linear_nt(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue) {
  linear_impl<Reference>(x, w, b, y, epilogue, true);
}
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c) { linear_impl<Reference>(a, b, Tensor(), c, {}, true); }
void linear_bf16(const Tensor& x, const Tensor& packed, int64_t in, int64_t out, const Tensor& b, Tensor& y,
                 Epilogue epilogue) {
  linear_bf16_impl<Reference>(x, packed, in, out, b, y, epilogue);
}
void quant_linear(const Tensor& x, const QuantizedTensor& w, const Tensor& b, Tensor& y,
                  const QuantLinearOptions& options, Epilogue epilogue) {
  quant_linear_impl<Reference>(x, w, b, y, options, epilogue);
}
void gather_rows(const Tensor& table, const Tensor& idx, Tensor& out, bool accumulate) {
  gather_host_indices<Reference>(table, idx, out, accumulate);
}
void gather_rows(const QuantizedTensor& table, const Tensor& idx, Tensor& out, bool accumulate) {
  gather_host_indices<Reference>(table, idx, out, accumulate);
}
}  // namespace reference

}  // namespace gpt2q::ops
