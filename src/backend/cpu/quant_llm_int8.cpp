// LLM.int8() kernels on the CPU (quant_llm_int8.h): the scalar reference
// and the fast path, bit-identical to it.
#include "backend/cpu/quant_llm_int8.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/quant_int8_kernels.h"
#include "core/error.h"
#include "core/rounding.h"
#include "core/tensor.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::cpu {
namespace {

using qformat::kInv127;
using qformat::kLlmInt8DequantConst;

// The weight's parts, from its view.
struct Llm {
  int64_t out, in;
  const int8_t* cb;
  const float* scb;
  const int32_t* row_sums;  // may be null (then computed per call)
};

Llm llm_of(const qformat::WeightView& v) {
  GPT2Q_CHECK(v.format.scheme == qformat::Scheme::llm_int8, "llm_int8: not an LLM.int8 weight");
  return {v.format.out, v.format.in, v.int8_codes(), v.scales, v.row_sums};
}

// Weight column k of output j as the outlier path sees it.
inline float dequantized_weight(const Llm& w, int64_t j, int64_t k) {
  return (static_cast<float>(w.cb[j * w.in + k]) * w.scb[j]) * kInv127;
}

// Σ_k CB[j, k] for the VNNI kernel, from the view or computed.
std::vector<int32_t> row_sums_of(const Llm& w) {
  std::vector<int32_t> sums(static_cast<size_t>(w.out), 0);
  for (int64_t j = 0; j < w.out; ++j)
    for (int64_t k = 0; k < w.in; ++k) sums[j] += w.cb[j * w.in + k];
  return sums;
}

// Below this many values a loop stays on one thread: waking the pool costs
// more than, say, quantizing one decoding token.
constexpr int64_t kParallelMinValues = int64_t{1} << 16;

// round(v · scale) into int8. The product of an fp16 value and 127 / absmax
// stays within ±127 up to rounding; non-finite values (absmax 0 or inf) give
// 0, which is what CUDA's __float2int_rn does with NaN.
int8_t int8_of(float v, float scale) {
  float r = round_half_even(v * scale);
  if (!std::isfinite(r)) return 0;
  return static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
}

void add_outlier_part(const Llm& w, const float* x, int64_t rows, const std::vector<int32_t>& cols,
                      float* y) {
  if (cols.empty()) return;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < w.out; ++j) {
      float s = 0.0f;
      for (int32_t k : cols) s += x[i * w.in + k] * dequantized_weight(w, j, k);
      y[i * w.out + j] += s;
    }
}

void check_shapes(const Llm& w, int64_t rows) {
  GPT2Q_CHECK(rows >= 0 && w.out > 0 && w.in > 0, "llm_int8_matmul: rows {} weight [{}, {}]", rows, w.out, w.in);
}

// The epilogue of rows [i0, i1), outputs [j0, j1).
void llm_int8_epilogue_rows(const int32_t* acc, const float* sca, const Llm& w, const float* bias,
                            int64_t i0, int64_t i1, int64_t j0, int64_t j1, bool fp32_epilogue, float* y) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = j0; j < j1; ++j) {
      // bnb CUDA: fmaf(acc * rowStats * colStats, MM_DEQUANT_CONST, bias), left to right.
      const float p = (static_cast<float>(acc[i * w.out + j]) * sca[i]) * w.scb[j];
      const float b = bias ? bias[j] : 0.0f;
      float v;
      if (!fp32_epilogue) {
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

// fp32 -> fp16 -> fp32 of 8 values with F16C, round to nearest even: the
// same as round_through_fp16 for every finite value and infinity.
inline __m256 round_through_fp16_x8(__m256 v) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// The fast path's activation codes. The buffers come from the caching
// allocator (scratch_tensor): at 32 x 128 tokens one c_fc call quantizes
// 4096 x 768 values and accumulates 4096 x 3072 int32 (50 MB); fresh
// zero-filled vectors paid their memset and page faults on every call.
struct ActivationCodes {
  Tensor q;       // I8 [rows, cols]
  Tensor absmax;  // F32 [rows]
  std::vector<int32_t> outlier_cols;
};

// quantize_rows_int8 in registers (8 values at a time), rows spread over the
// threads; the scalar one stays the reference, and the tests hold the two to
// the same codes bit for bit.
ActivationCodes quantize_rows_int8_fast(const float* x, int64_t rows, int64_t cols, float threshold) {
  ActivationCodes r{scratch_tensor({rows, cols}, DType::I8), scratch_tensor({rows}, DType::F32), {}};
  int8_t* const codes = r.q.data<int8_t>();
  float* const absmax = r.absmax.data<float>();
  Tensor x16_buf = scratch_tensor({rows, cols}, DType::F32);
  float* const x16 = x16_buf.data<float>();
  // Whether a row holds an outlier: each row is one thread's, so no races;
  // the few rows that do are scanned again for their columns.
  std::vector<uint8_t> row_has_outlier(static_cast<size_t>(rows), 0);
  const int64_t c8 = cols / 8 * 8;
  const __m256 sign = _mm256_set1_ps(-0.0f), thr = _mm256_set1_ps(threshold);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinValues)
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * cols;
    float* hi = x16 + i * cols;
    __m256 m = _mm256_setzero_ps();
    int any_outlier = 0;
    for (int64_t k = 0; k < c8; k += 8) {
      const __m256 h = round_through_fp16_x8(_mm256_loadu_ps(xi + k));
      _mm256_storeu_ps(hi + k, h);
      const __m256 a = _mm256_andnot_ps(sign, h);
      if (threshold > 0.0f) {
        const __m256 out = _mm256_cmp_ps(a, thr, _CMP_GE_OQ);
        any_outlier |= _mm256_movemask_ps(out);
        // Only the outlier elements themselves leave the absmax (as the reference).
        m = _mm256_max_ps(_mm256_andnot_ps(out, a), m);  // max(a, m): a NaN lane keeps m, as std::max(m, a)
      } else {
        m = _mm256_max_ps(a, m);
      }
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    float row_max = 0.0f;
    for (float v : lanes) row_max = std::max(row_max, v);
    for (int64_t k = c8; k < cols; ++k) {
      hi[k] = round_through_fp16(xi[k]);
      const float a = std::fabs(hi[k]);
      if (threshold > 0.0f && a >= threshold) {
        any_outlier = 1;
        continue;
      }
      row_max = std::max(row_max, a);
    }
    absmax[i] = row_max;
    row_has_outlier[static_cast<size_t>(i)] = any_outlier != 0;
  }
  std::vector<uint8_t> is_outlier_col(static_cast<size_t>(cols), 0);
  if (threshold > 0.0f) {
    for (int64_t i = 0; i < rows; ++i)
      if (row_has_outlier[static_cast<size_t>(i)])
        for (int64_t k = 0; k < cols; ++k)
          if (std::fabs(x16[i * cols + k]) >= threshold) is_outlier_col[static_cast<size_t>(k)] = 1;
    for (int64_t k = 0; k < cols; ++k)
      if (is_outlier_col[static_cast<size_t>(k)]) r.outlier_cols.push_back(static_cast<int32_t>(k));
  }
  const __m256 lo = _mm256_set1_ps(-127.0f), hi127 = _mm256_set1_ps(127.0f), inf = _mm256_set1_ps(INFINITY);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinValues)
  for (int64_t i = 0; i < rows; ++i) {
    const float scale = 127.0f / absmax[i];
    const __m256 sv = _mm256_set1_ps(scale);
    const float* hi = x16 + i * cols;
    int8_t* q = codes + i * cols;
    for (int64_t k = 0; k < c8; k += 8) {
      const __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(hi + k), sv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      // Non-finite (absmax 0 or inf) -> 0, as int8_of.
      const __m256 finite = _mm256_cmp_ps(_mm256_andnot_ps(sign, v), inf, _CMP_LT_OQ);
      const __m256 c = _mm256_and_ps(finite, _mm256_min_ps(_mm256_max_ps(v, lo), hi127));
      alignas(32) int32_t lane_codes[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lane_codes), _mm256_cvttps_epi32(c));
      for (int l = 0; l < 8; ++l) q[k + l] = is_outlier_col[k + l] ? 0 : static_cast<int8_t>(lane_codes[l]);
    }
    for (int64_t k = c8; k < cols; ++k) q[k] = is_outlier_col[k] ? 0 : int8_of(hi[k], scale);
  }
  return r;
}

// add_outlier_part 8 outputs at a time, rows over the threads. Bit-identical:
// the outlier weight columns are dequantized by the same expression, and each
// output still sums its columns in ascending order with a multiply then an
// add (no FMA), as the reference. They are laid out [column, out] once per
// call so that 8 neighbouring outputs load as one vector.
void add_outlier_part_fast(const Llm& w, const float* x, int64_t rows, const std::vector<int32_t>& cols,
                           float* y) {
  if (cols.empty()) return;
  const int64_t n = static_cast<int64_t>(cols.size()), out = w.out, o8 = out / 8 * 8;
  Tensor wt_buf = scratch_tensor({n, out}, DType::F32);
  float* const wt = wt_buf.data<float>();
  for (int64_t c = 0; c < n; ++c)
    for (int64_t j = 0; j < out; ++j) wt[c * out + j] = dequantized_weight(w, j, cols[c]);
#pragma omp parallel for schedule(static) if (rows * out * n >= kParallelMinValues)
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * w.in;
    float* yi = y + i * out;
    for (int64_t j = 0; j < o8; j += 8) {
      __m256 s = _mm256_setzero_ps();
      for (int64_t c = 0; c < n; ++c)
        s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_set1_ps(xi[cols[c]]), _mm256_loadu_ps(wt + c * out + j)));
      _mm256_storeu_ps(yi + j, _mm256_add_ps(_mm256_loadu_ps(yi + j), s));
    }
    for (int64_t j = o8; j < out; ++j) {
      float s = 0.0f;
      for (int64_t c = 0; c < n; ++c) s += xi[cols[c]] * wt[c * out + j];
      yi[j] += s;
    }
  }
}

// llm_int8_epilogue, 8 outputs at a time; bit-identical (same operations,
// same roundings: FMA is fused in both, F16C rounds to nearest even).
void llm_int8_epilogue_fast(const int32_t* acc, const float* sca, const Llm& w, const float* bias,
                            int64_t rows, bool fp32_epilogue, float* y) {
  const int64_t out = w.out, o8 = out / 8 * 8;
  const __m256 cst = _mm256_set1_ps(kLlmInt8DequantConst), zero = _mm256_setzero_ps();
#pragma omp parallel for schedule(static) if (rows * out >= kParallelMinValues)
  for (int64_t i = 0; i < rows; ++i) {
    const __m256 sa = _mm256_set1_ps(sca[i]);
    for (int64_t j = 0; j < o8; j += 8) {
      const __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(
                                                       reinterpret_cast<const __m256i*>(acc + i * out + j))),
                                                   sa),
                                     _mm256_loadu_ps(w.scb + j));
      const __m256 b = bias ? _mm256_loadu_ps(bias + j) : zero;
      __m256 v;
      if (!fp32_epilogue) {
        v = round_through_fp16_x8(_mm256_fmadd_ps(p, cst, zero));
        if (bias) v = round_through_fp16_x8(_mm256_add_ps(v, b));
      } else {
        v = _mm256_fmadd_ps(p, cst, b);
      }
      _mm256_storeu_ps(y + i * out + j, v);
    }
    if (o8 < out) llm_int8_epilogue_rows(acc, sca, w, bias, i, i + 1, o8, out, fp32_epilogue, y);
  }
}

}  // namespace

Int8Rows llm_int8_quantize_rows(const float* x, int64_t rows, int64_t cols, float threshold) {
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

void llm_int8_epilogue(const int32_t* acc, const float* sca, const qformat::WeightView& view, const float* bias,
                       int64_t rows, bool fp32_epilogue, float* y) {
  const Llm w = llm_of(view);
  llm_int8_epilogue_rows(acc, sca, w, bias, 0, rows, 0, w.out, fp32_epilogue, y);
}

void llm_int8_linear_reference(const qformat::WeightView& view, const float* x, int64_t rows, const float* bias,
                               float threshold, bool fp32_epilogue, float* y) {
  const Llm w = llm_of(view);
  check_shapes(w, rows);
  Int8Rows a = llm_int8_quantize_rows(x, rows, w.in, threshold);
  std::vector<int32_t> acc(static_cast<size_t>(rows * w.out));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < w.out; ++j) {
      int32_t s = 0;
      for (int64_t k = 0; k < w.in; ++k) s += int32_t{a.q[i * w.in + k]} * int32_t{w.cb[j * w.in + k]};
      acc[i * w.out + j] = s;
    }
  llm_int8_epilogue_rows(acc.data(), a.absmax.data(), w, bias, 0, rows, 0, w.out, fp32_epilogue, y);
  add_outlier_part(w, x, rows, a.outlier_cols, y);
}

void llm_int8_linear(const qformat::WeightView& view, const float* x, int64_t rows, const float* bias,
                     float threshold, bool fp32_epilogue, float* y, Isa isa) {
  const Llm w = llm_of(view);
  check_shapes(w, rows);
  require_isa(isa);
  std::vector<int32_t> computed_sums;
  const int32_t* sums = w.row_sums;
  if (!sums) {
    computed_sums = row_sums_of(w);
    sums = computed_sums.data();
  }
  if (isa == Isa::scalar) {
    // The scalar ISA is the reference's arithmetic with the dispatcher's int8 GEMM.
    Int8Rows a = llm_int8_quantize_rows(x, rows, w.in, threshold);
    std::vector<int32_t> acc(static_cast<size_t>(rows * w.out));
    int8_gemm_i32(Int8Gemm{a.q.data(), rows, w.cb, sums, w.in, w.out, acc.data()}, isa);
    llm_int8_epilogue_rows(acc.data(), a.absmax.data(), w, bias, 0, rows, 0, w.out, fp32_epilogue, y);
    add_outlier_part(w, x, rows, a.outlier_cols, y);
    return;
  }
  ActivationCodes a = quantize_rows_int8_fast(x, rows, w.in, threshold);
  Tensor acc = scratch_tensor({rows, w.out}, DType::I32);
  int8_gemm_i32(Int8Gemm{a.q.data<int8_t>(), rows, w.cb, sums, w.in, w.out, acc.data<int32_t>()}, isa);
  llm_int8_epilogue_fast(acc.data<int32_t>(), a.absmax.data<float>(), w, bias, rows, fp32_epilogue, y);
  add_outlier_part_fast(w, x, rows, a.outlier_cols, y);
}

}  // namespace gpt2q::cpu
