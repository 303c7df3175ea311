#include "backend/cpu/gemm_bf16.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"

namespace gpt2q::cpu {

namespace {
bool emulation = false;
}

bool has_native_bf16_gemm() { return !emulation && cpu_features().avx512_ok() && cpu_features().avx512bf16; }

void set_bf16_gemm_emulation(bool on) { emulation = on; }

void bf16_pack_rows_scalar(const float* a, int64_t m, int64_t k, uint16_t* dst) {
  const int64_t kp = bf16_padded_k(k);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t q = 0; q < k; ++q) dst[i * kp + q] = float_to_bf16(a[i * k + q]);
    if (kp != k) dst[i * kp + k] = 0;
  }
}

void bf16_pack_panels_scalar(const float* b, int64_t n, int64_t k, uint16_t* dst) {
  const int64_t kp = bf16_padded_k(k), pairs = kp / 2;
  for (int64_t p = 0; p < bf16_panels(n); ++p)
    for (int64_t q = 0; q < pairs; ++q)
      for (int64_t c = 0; c < 16; ++c)
        for (int64_t e = 0; e < 2; ++e) {
          const int64_t j = 16 * p + c, kk = 2 * q + e;
          dst[((p * pairs + q) * 16 + c) * 2 + e] = (j < n && kk < k) ? float_to_bf16(b[j * k + kk]) : 0;
        }
}

void bf16_pack_rows(const float* a, int64_t m, int64_t k, uint16_t* dst) {
  if (has_native_bf16_gemm())
    detail::bf16_pack_rows_avx512bf16(a, m, k, dst);
  else
    bf16_pack_rows_scalar(a, m, k, dst);
}

void bf16_pack_panels(const float* b, int64_t n, int64_t k, uint16_t* dst) {
  if (has_native_bf16_gemm())
    detail::bf16_pack_panels_avx512bf16(b, n, k, dst);
  else
    bf16_pack_panels_scalar(b, n, k, dst);
}

void gemm_bf16_packed(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t k, const float* col_scale,
                      const float* bias, float* c, int64_t ldc) {
  GPT2Q_CHECK(has_native_bf16_gemm(), "gemm_bf16_packed: this CPU has no AVX512_BF16");
  if (m == 0 || n == 0) return;
  detail::gemm_bf16_packed_avx512bf16(a, m, b, n, k, col_scale, bias, c, ldc);
}

void gemm_bf16_reference(const float* a, int64_t m, const float* b, int64_t n, int64_t k, const float* col_scale,
                         const float* bias, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t q = 0; q < k; ++q)
        acc += static_cast<double>(bf16_to_float(float_to_bf16(a[i * k + q]))) *
               static_cast<double>(bf16_to_float(float_to_bf16(b[j * k + q])));
      float v = static_cast<float>(acc);
      if (col_scale) v *= col_scale[j];
      if (bias) v += bias[j];
      c[i * ldc + j] = v;
    }
}

}  // namespace gpt2q::cpu
