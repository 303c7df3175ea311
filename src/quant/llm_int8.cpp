// LLM.int8()'s weight format (llm_int8.h); its products run in
// backend/cpu/quant_llm_int8.cpp.
#include "quant/llm_int8.h"

#include <cmath>

#include "core/error.h"

namespace gpt2q::quant {

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

qformat::WeightView view_of(const LlmInt8Weight& w) {
  qformat::WeightView v;
  v.format.scheme = qformat::Scheme::llm_int8;
  v.format.out = w.out;
  v.format.in = w.in;
  v.codes = w.cb.data();
  v.scales = w.scb.data();
  v.row_sums = w.cb_row_sums.empty() ? nullptr : w.cb_row_sums.data();
  return v;
}

void llm_int8_epilogue(const int32_t* acc, const float* sca, const LlmInt8Weight& w, const float* bias,
                       int64_t rows, LlmInt8Epilogue epilogue, float* y) {
  cpu::llm_int8_epilogue(acc, sca, view_of(w), bias, rows, epilogue == LlmInt8Epilogue::fp32, y);
}

void llm_int8_matmul_reference(const LlmInt8Weight& w, const float* bias, const float* x, int64_t rows,
                               const LlmInt8Options& opt, float* y) {
  cpu::llm_int8_linear_reference(view_of(w), x, rows, bias, opt.threshold, opt.epilogue == LlmInt8Epilogue::fp32, y);
}

void llm_int8_matmul(const LlmInt8Weight& w, const float* bias, const float* x, int64_t rows,
                     const LlmInt8Options& opt, float* y, Isa isa) {
  cpu::llm_int8_linear(view_of(w), x, rows, bias, opt.threshold, opt.epilogue == LlmInt8Epilogue::fp32, y, isa);
}

}  // namespace gpt2q::quant
