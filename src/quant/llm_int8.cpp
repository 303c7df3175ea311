#include "quant/llm_int8.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/int8_kernels.h"
#include "quant/rounding.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::quant {
namespace {

// round(v · scale) into int8. The product of an fp16 value and 127 / absmax
// stays within ±127 up to rounding; non-finite values (absmax 0 or inf) give
// 0, which is what CUDA's __float2int_rn does with NaN.
int8_t int8_of(float v, float scale) {
  float r = round_half_even(v * scale);
  if (!std::isfinite(r)) return 0;
  return static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
}

void add_outlier_part(const LlmInt8Weight& w, const float* x, int64_t rows, const std::vector<int32_t>& cols,
                      float* y) {
  if (cols.empty()) return;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < w.out; ++j) {
      float s = 0.0f;
      for (int32_t k : cols) s += x[i * w.in + k] * llm_int8_dequantized_weight(w, j, k);
      y[i * w.out + j] += s;
    }
}

void check_shapes(const LlmInt8Weight& w, int64_t rows) {
  GPT2Q_CHECK(rows >= 0 && w.out > 0 && w.in > 0, "llm_int8_matmul: rows {} weight [{}, {}]", rows, w.out, w.in);
}

}  // namespace

Int8Rows quantize_rows_int8(const float* x, int64_t rows, int64_t cols, float threshold) {
  Int8Rows r;
  r.rows = rows;
  r.cols = cols;
  r.q.assign(static_cast<size_t>(rows * cols), 0);
  r.absmax.assign(static_cast<size_t>(rows), 0.0f);
  std::vector<float> x16(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < x16.size(); ++i) x16[i] = round_through_fp16(x[i]);

  std::vector<uint8_t> is_outlier_col(static_cast<size_t>(cols), 0);
  if (threshold > 0.0f) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t k = 0; k < cols; ++k)
        if (std::fabs(x16[i * cols + k]) >= threshold) is_outlier_col[k] = 1;
    for (int64_t k = 0; k < cols; ++k)
      if (is_outlier_col[k]) r.outlier_cols.push_back(static_cast<int32_t>(k));
  }
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = x16.data() + i * cols;
    float absmax = 0.0f;
    for (int64_t k = 0; k < cols; ++k) {
      float a = std::fabs(row[k]);
      // Only the outlier elements themselves leave the absmax, not their columns.
      if (threshold > 0.0f && a >= threshold) continue;
      absmax = std::max(absmax, a);
    }
    r.absmax[i] = absmax;
    const float scale = 127.0f / absmax;
    for (int64_t k = 0; k < cols; ++k)
      r.q[i * cols + k] = is_outlier_col[k] ? 0 : int8_of(row[k], scale);
  }
  return r;
}

size_t LlmInt8Weight::bytes() const {
  return cb.size() * sizeof(int8_t) + scb.size() * sizeof(float) + cb_row_sums.size() * sizeof(int32_t);
}

LlmInt8Weight quantize_llm_int8(const float* w, int64_t out, int64_t in) {
  if (out <= 0 || in <= 0) fail("LLM.int8 quantization: empty weight [{}, {}]", out, in);
  for (int64_t i = 0; i < out * in; ++i)
    if (!std::isfinite(w[i])) fail("LLM.int8 quantization: non-finite weight {} at index {}", w[i], i);
  Int8Rows rows = quantize_rows_int8(w, out, in, 0.0f);
  LlmInt8Weight r;
  r.out = out;
  r.in = in;
  r.cb = std::move(rows.q);
  r.scb = std::move(rows.absmax);
  r.cb_row_sums.assign(static_cast<size_t>(out), 0);
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k) r.cb_row_sums[j] += r.cb[j * in + k];
  return r;
}

void llm_int8_epilogue(const int32_t* acc, const float* sca, const LlmInt8Weight& w, const float* bias,
                       int64_t rows, LlmInt8Epilogue epilogue, float* y) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < w.out; ++j) {
      // bnb CUDA: fmaf(acc * rowStats * colStats, MM_DEQUANT_CONST, bias), left to right.
      const float p = (static_cast<float>(acc[i * w.out + j]) * sca[i]) * w.scb[j];
      const float b = bias ? bias[j] : 0.0f;
      float v;
      if (epilogue == LlmInt8Epilogue::cuda_fp16) {
        // Written as fp16 without the bias (an fp32 bias is not fused), then
        // bias added to that fp16 tensor, i.e. in fp32 and rounded to fp16.
        v = round_through_fp16(std::fma(p, kLlmInt8DequantConst, 0.0f));
        if (bias) v = round_through_fp16(v + b);
      } else {
        v = std::fma(p, kLlmInt8DequantConst, b);
      }
      y[i * w.out + j] = v;
    }
}

void llm_int8_matmul_reference(const LlmInt8Weight& w, const float* bias, const float* x, int64_t rows,
                               const LlmInt8Options& opt, float* y) {
  check_shapes(w, rows);
  Int8Rows a = quantize_rows_int8(x, rows, w.in, opt.threshold);
  std::vector<int32_t> acc(static_cast<size_t>(rows * w.out));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < w.out; ++j) {
      int32_t s = 0;
      for (int64_t k = 0; k < w.in; ++k) s += int32_t{a.q[i * w.in + k]} * int32_t{w.cb[j * w.in + k]};
      acc[i * w.out + j] = s;
    }
  llm_int8_epilogue(acc.data(), a.absmax.data(), w, bias, rows, opt.epilogue, y);
  add_outlier_part(w, x, rows, a.outlier_cols, y);
}

void llm_int8_matmul(const LlmInt8Weight& w, const float* bias, const float* x, int64_t rows,
                     const LlmInt8Options& opt, float* y, Isa isa) {
  check_shapes(w, rows);
  Int8Rows a = quantize_rows_int8(x, rows, w.in, opt.threshold);
  std::vector<int32_t> acc(static_cast<size_t>(rows * w.out));
  int8_gemm_i32(Int8Gemm{a.q.data(), rows, w.cb.data(), w.cb_row_sums.data(), w.in, w.out, acc.data()}, isa);
  llm_int8_epilogue(acc.data(), a.absmax.data(), w, bias, rows, opt.epilogue, y);
  add_outlier_part(w, x, rows, a.outlier_cols, y);
}

}  // namespace gpt2q::quant
