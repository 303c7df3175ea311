// The linear-layer ops on CUDA (backend/linear_args.h): every product is one
// cuBLASLt call (gemm.h) with the bias, the tanh GELU and the residual add
// fused where the types allow; packed weights are decoded into a scratch
// of the activations' dtype first, except for a few rows, where a fused
// dequantize-GEMV reads them once (quant_gemv.h; LLM.int8 runs its own
// pipeline, llm_int8.h), as dense 16-bit weights do (dense_gemv.h); gathers
// read any table into fp32 rows.
//
// fp32 activations are the exactness path: fp32 operands and sums, and the
// GELU in our own kernel (cuBLASLt's epilogue GELU is for the 16-bit path,
// where its rounding is far below bf16's).
#include <fmt/format.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/dense_gemv.h"
#include "backend/cuda/dequant.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/llm_int8.h"
#include "backend/cuda/quant_gemv.h"
#include "core/error.h"

namespace gpt2q::cuda {

namespace {

using backend::Activation;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    default: fail("CUDA linear: unsupported dtype {}", dtype_name(t));
  }
}

bool is_16bit(DType t) { return t == DType::F16 || t == DType::BF16; }

// The product of x with a weight already in x's dtype (w_out_in: [out, in]),
// then the op's epilogue.
void product(const void* x, DType x_dtype, const void* w, bool w_out_in, int64_t rows, int64_t in, int64_t out,
             const void* bias, DType bias_dtype, void* y, DType y_dtype, const backend::Epilogue& e,
             cudaStream_t stream) {
  if (x_dtype == DType::F32 && y_dtype != DType::F32)
    fail("CUDA linear: fp32 activations write an F32 output, got {}", dtype_name(y_dtype));
  // cuBLASLt adds a bias of the output's type, or an F32 one to a 16-bit
  // output (the layers hold only their F32 bias: the device holds what the
  // CPU accounts for, and the bias is added before the one rounding to
  // y's dtype); any other bias is converted for this call, and so is an F32
  // one where this cuBLASLt found no algorithm for it (remembered per
  // thread: the heuristic is not asked again).
  thread_local bool f32_bias_unsupported = false;
  const bool bias_f32 = bias && bias_dtype == DType::F32 && is_16bit(y_dtype) && !f32_bias_unsupported;
  DeviceBuffer converted_bias(bias && bias_dtype != y_dtype && !bias_f32 ? out * dtype_size(y_dtype) : 0);
  if (converted_bias.get()) {
    convert(bias, bias_dtype, converted_bias.get(), y_dtype, out, stream);
    bias = converted_bias.get();
  }
  GemmCall g;
  g.x = x;
  g.x_type = cuda_type(x_dtype);
  g.w = w;
  g.w_type = g.x_type;
  g.w_out_in = w_out_in;
  g.rows = rows;
  g.in = in;
  g.out = out;
  g.bias = bias;
  g.bias_f32 = bias_f32;
  g.y = y;
  g.y_type = cuda_type(y_dtype);
  g.accumulate = e.accumulate;
  const bool fused_gelu = e.activation == Activation::gelu_new && is_16bit(x_dtype);
  if (fused_gelu) g.activation = GemmActivation::gelu_tanh;
  if (in == 0) {
    // cuBLASLt needs k >= 1; the product is then the bias (or zero).
    if (y_dtype != DType::F32 || e.accumulate) fail("CUDA linear: an empty inner dimension needs an F32 output");
    if (bias) {
      broadcast_rows(static_cast<const float*>(bias), rows, out, static_cast<float*>(y), stream);
    } else {
      fill(static_cast<float*>(y), rows * out, 0.0f, stream);
    }
  } else if (bias_f32) {
    try {
      gemm(g, stream);
    } catch (const Error&) {
      f32_bias_unsupported = true;
      return product(x, x_dtype, w, w_out_in, rows, in, out, bias, bias_dtype, y, y_dtype, e, stream);
    }
  } else {
    gemm(g, stream);
  }
  if (!fused_gelu && e.activation == Activation::gelu_new) gelu_new(y, y_dtype, rows * out, stream);
  if (e.activation == Activation::gelu_erf) gelu_erf(y, y_dtype, rows * out, stream);
}

}  // namespace

void linear_op(const backend::LinearArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.out == 0) return;
  // A few rows of 16-bit activations (decode steps): our GEMV (dense_gemv.h).
  if (dense_gemv_supports(a)) {
    dense_gemv(a, stream);
    return;
  }
  const void* w = a.w;
  // A weight of another dtype than the activations is converted per call
  // (layers place dense weights in the compute dtype, so this is the
  // F32-activations-with-16-bit-weights path).
  DeviceBuffer converted(a.w_dtype != a.x_dtype ? a.in * a.out * dtype_size(a.x_dtype) : 0);
  if (converted.get()) {
    convert(a.w, a.w_dtype, converted.get(), a.x_dtype, a.in * a.out, stream);
    w = converted.get();
  }
  product(a.x, a.x_dtype, w, a.w_out_in, a.rows, a.in, a.out, a.bias, a.bias_dtype, a.y, a.y_dtype, a.epilogue,
          stream);
}

void quant_linear_op(const backend::QuantLinearArgs& a, cudaStream_t stream) {
  const qformat::Format& f = a.w.format;
  if (a.rows == 0 || f.out == 0) return;
  if (f.scheme == qformat::Scheme::llm_int8) {
    DeviceBuffer scratch(llm_int8_scratch_bytes(a.rows, f.in, f.out));
    const LlmInt8Scratch s = llm_int8_scratch(scratch.get(), a.rows, f.in, f.out);
    llm_int8_quantize_rows(a.x, a.x_dtype, a.rows, f.in, a.llm_int8_threshold, s, stream);
    llm_int8_gemm(s.codes, a.w.int8_codes(), a.rows, f.in, f.out, s.acc, stream);
    llm_int8_finish(a, s, stream);
    return;
  }
  // A few rows (decode steps): one fused kernel reads each packed weight
  // once (quant_gemv.h).
  if (quant_gemv_supports(a)) {
    quant_gemv(a, stream);
    return;
  }
  // Decoded into the activations' dtype ([out, in]), then one GEMM.
  DeviceBuffer decoded(f.numel() * dtype_size(a.x_dtype));
  DeviceBuffer absmax(f.scheme == qformat::Scheme::blockwise4 && f.nested ? f.blocks() * sizeof(float) : 0);
  dequantize(a.w, decoded.get(), a.x_dtype, absmax.get<float>(), stream);
  product(a.x, a.x_dtype, decoded.get(), true, a.rows, f.in, f.out, a.bias, a.bias_dtype, a.y, a.y_dtype, a.epilogue,
          stream);
}

void gather_rows_op(const backend::GatherArgs& a, cudaStream_t stream) {
  if (a.packed) {
    const qformat::Format& f = a.packed->format;
    DeviceBuffer absmax(f.scheme == qformat::Scheme::blockwise4 && f.nested ? f.blocks() * sizeof(float) : 0);
    dequantize_rows(*a.packed, a.idx, a.n, a.out, a.accumulate, absmax.get<float>(), stream);
    return;
  }
  gather_dense_rows(a.table, a.table_dtype, a.cols, a.idx, a.n, a.out, a.accumulate, stream);
}

void linear(const float* x, int64_t rows, int64_t in, const float* w, const float* bias, int64_t out, float* y,
            cudaStream_t stream) {
  backend::LinearArgs a;
  a.x = x;
  a.rows = rows;
  a.in = in;
  a.out = out;
  a.w = w;
  a.bias = bias;
  a.y = y;
  linear_op(a, stream);
}

void matmul_nt(const float* a, const float* b, int64_t m, int64_t k, int64_t n, float* c, cudaStream_t stream) {
  backend::LinearArgs args;
  args.x = a;
  args.rows = m;
  args.in = k;
  args.out = n;
  args.w = b;
  args.w_out_in = true;
  args.y = c;
  linear_op(args, stream);
}

}  // namespace gpt2q::cuda
