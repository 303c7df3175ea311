#pragma once
// LLM.int8() on the CPU as bitsandbytes' Linear8bitLt runs it for inference
// (quant/llm_int8.h has every formula and where it comes from). The scalar
// functions are the reference; llm_int8_linear with any ISA but scalar runs
// the fast kernels, bit-identical to it (only the int32 sums are reordered,
// and they are exact).
#include <cstdint>
#include <vector>

#include "backend/cpu/isa.h"
#include "backend/quant_format.h"

namespace gpt2q::cpu {

// Row-wise absmax int8 of fp16-rounded values: bnb's int8_vectorwise_quant,
// with outlier columns (|x16| >= threshold in any row) zeroed and left out of
// the row absmax. threshold 0: no outliers.
struct Int8Rows {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;              // [rows, cols]
  std::vector<float> absmax;          // [rows] (SCA / SCB)
  std::vector<int32_t> outlier_cols;  // ascending; empty when threshold == 0
};
Int8Rows llm_int8_quantize_rows(const float* x, int64_t rows, int64_t cols, float threshold);

// The epilogue alone: acc[rows, out] int32 -> y (no outlier part).
// fp32_epilogue false is bnb's CUDA epilogue (the int8 part rounded to fp16).
void llm_int8_epilogue(const int32_t* acc, const float* sca, const qformat::WeightView& w, const float* bias,
                       int64_t rows, bool fp32_epilogue, float* y);

// y[rows, out] = LLM.int8 product of x[rows, in] (+ bias).
void llm_int8_linear(const qformat::WeightView& w, const float* x, int64_t rows, const float* bias, float threshold,
                     bool fp32_epilogue, float* y, Isa isa = best_isa());
void llm_int8_linear_reference(const qformat::WeightView& w, const float* x, int64_t rows, const float* bias,
                               float threshold, bool fp32_epilogue, float* y);

}  // namespace gpt2q::cpu
