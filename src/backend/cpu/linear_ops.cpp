// backend/linear_args.h on the CPU: the product by its weight kind, then the
// epilogue (an accumulating product goes through a scratch buffer and one
// add, so its result is the plain product's plus y, as separate ops give).
#include "backend/cpu/linear_ops.h"

#include <vector>

#include "backend/cpu/bf16_linear.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/half_gemm.h"
#include "backend/cpu/quant_linear.h"
#include "backend/cpu/reference_ops.h"
#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"

namespace gpt2q::cpu {

namespace {

using backend::Activation;

struct Fast {
  static void gelu_new(float* x, int64_t n) { cpu::gelu_new(x, n); }
  static void gelu_erf(float* x, int64_t n) { cpu::gelu_erf(x, n); }
  static void add(float* x, const float* y, int64_t n) { cpu::add_inplace(x, y, n); }
};
struct Scalar {
  static void gelu_new(float* x, int64_t n) { cpu::reference::gelu_new(x, n); }
  static void gelu_erf(float* x, int64_t n) { cpu::reference::gelu_erf(x, n); }
  static void add(float* x, const float* y, int64_t n) { cpu::reference::add_inplace(x, y, n); }
};

void require_f32_activations(const char* op, DType x, DType y, const void* bias, DType bias_dtype) {
  if (x != DType::F32 || y != DType::F32)
    fail("{}: the CPU computes with F32 activations, got x {} and y {}", op, dtype_name(x), dtype_name(y));
  if (bias && bias_dtype != DType::F32) fail("{}: the CPU takes an F32 bias, got {}", op, dtype_name(bias_dtype));
}

// product(dst) writes the plain product into dst [rows, out].
template <typename K, typename Product>
void with_epilogue(const backend::Epilogue& e, float* y, int64_t rows, int64_t out, Product&& product) {
  const int64_t n = rows * out;
  if (e.accumulate) {
    Tensor t = scratch_tensor({rows, out}, DType::F32);
    product(t.data<float>());
    K::add(y, t.data<float>(), n);
    return;
  }
  product(y);
  if (e.activation == Activation::gelu_new) K::gelu_new(y, n);
  if (e.activation == Activation::gelu_erf) K::gelu_erf(y, n);
}

// An fp32 copy of a 16-bit weight (the reference's exact conversions).
std::vector<float> to_f32(const void* w, DType dtype, int64_t n) {
  const auto* p = static_cast<const uint16_t*>(w);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = dtype == DType::BF16 ? bf16_to_float(p[i]) : half_to_float(p[i]);
  return v;
}

bool is_16bit(DType t) { return t == DType::F16 || t == DType::BF16; }

// y[r, :] += bias (the [out, in] products have no bias of their own).
void add_bias_rows(float* y, int64_t rows, int64_t out, const float* bias) {
  if (!bias) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < out; ++j) y[r * out + j] += bias[j];
}

}  // namespace

void linear_op(const backend::LinearArgs& a) {
  require_f32_activations("linear", a.x_dtype, a.y_dtype, a.bias, a.bias_dtype);
  const auto* bias = static_cast<const float*>(a.bias);
  const auto* x = static_cast<const float*>(a.x);
  with_epilogue<Fast>(a.epilogue, static_cast<float*>(a.y), a.rows, a.out, [&](float* y) {
    if (a.w_bf16_packed) return bf16_linear(x, a.rows, static_cast<const uint16_t*>(a.w), a.in, a.out, bias, y);
    if (a.w_dtype == DType::F32) {
      const auto* w = static_cast<const float*>(a.w);
      if (!a.w_out_in) return cpu::linear(x, a.rows, a.in, w, bias, a.out, y);
      cpu::sgemm_nt(a.rows, a.out, a.in, 1.0f, x, a.in, w, a.in, 0.0f, y, a.out);
      return add_bias_rows(y, a.rows, a.out, bias);
    }
    GPT2Q_CHECK(is_16bit(a.w_dtype), "linear: weight dtype {}", dtype_name(a.w_dtype));
    const auto* w = static_cast<const uint16_t*>(a.w);
    const bool bf16 = a.w_dtype == DType::BF16;
    if (!a.w_out_in) return linear_16bit(x, a.rows, a.in, w, bf16, bias, a.out, y);
    matmul_nt_16bit(x, a.rows, a.in, w, bf16, a.out, y);
    add_bias_rows(y, a.rows, a.out, bias);
  });
}

void quant_linear_op(const backend::QuantLinearArgs& a) {
  require_f32_activations("quant_linear", a.x_dtype, a.y_dtype, a.bias, a.bias_dtype);
  const auto* bias = static_cast<const float*>(a.bias);
  QuantLinearOptions opt;
  opt.compute = a.compute;
  opt.llm_int8_threshold = a.llm_int8_threshold;
  opt.llm_int8_fp32_epilogue = a.llm_int8_fp32_epilogue;
  with_epilogue<Fast>(a.epilogue, static_cast<float*>(a.y), a.rows, a.w.format.out, [&](float* y) {
    quant_linear(a.w, static_cast<const float*>(a.x), a.rows, bias, y, opt);
  });
}

void gather_rows_op(const backend::GatherArgs& a) {
  if (a.packed) return quant_gather_rows(*a.packed, a.idx, a.n, a.out, a.accumulate);
  if (a.table_dtype == DType::F32)
    return gather_rows_f32(static_cast<const float*>(a.table), a.cols, a.idx, a.n, a.out, a.accumulate);
  GPT2Q_CHECK(is_16bit(a.table_dtype), "gather_rows: table dtype {}", dtype_name(a.table_dtype));
  gather_rows_16bit(static_cast<const uint16_t*>(a.table), a.table_dtype == DType::BF16, a.cols, a.idx, a.n, a.out,
                    a.accumulate);
}

namespace reference {

void linear_op(const backend::LinearArgs& a) {
  require_f32_activations("linear", a.x_dtype, a.y_dtype, a.bias, a.bias_dtype);
  const auto* bias = static_cast<const float*>(a.bias);
  const auto* x = static_cast<const float*>(a.x);
  if (a.w_bf16_packed)
    return with_epilogue<Scalar>(a.epilogue, static_cast<float*>(a.y), a.rows, a.out, [&](float* y) {
      bf16_linear_reference(x, a.rows, static_cast<const uint16_t*>(a.w), a.in, a.out, bias, y);
    });
  std::vector<float> w16;
  const float* w = static_cast<const float*>(a.w);
  if (a.w_dtype != DType::F32) {
    w16 = to_f32(a.w, a.w_dtype, a.in * a.out);
    w = w16.data();
  }
  with_epilogue<Scalar>(a.epilogue, static_cast<float*>(a.y), a.rows, a.out, [&](float* y) {
    if (!a.w_out_in) return cpu::reference::linear(x, a.rows, a.in, w, bias, a.out, y);
    cpu::reference::matmul_nt(x, w, a.rows, a.in, a.out, y);
    add_bias_rows(y, a.rows, a.out, bias);
  });
}

void quant_linear_op(const backend::QuantLinearArgs& a) {
  require_f32_activations("quant_linear", a.x_dtype, a.y_dtype, a.bias, a.bias_dtype);
  const auto* bias = static_cast<const float*>(a.bias);
  QuantLinearOptions opt;
  opt.llm_int8_threshold = a.llm_int8_threshold;
  opt.llm_int8_fp32_epilogue = a.llm_int8_fp32_epilogue;
  with_epilogue<Scalar>(a.epilogue, static_cast<float*>(a.y), a.rows, a.w.format.out, [&](float* y) {
    quant_linear_reference(a.w, static_cast<const float*>(a.x), a.rows, bias, y, opt);
  });
}

void gather_rows_op(const backend::GatherArgs& a) { cpu::gather_rows_op(a); }  // copies and exact conversions

}  // namespace reference

}  // namespace gpt2q::cpu
