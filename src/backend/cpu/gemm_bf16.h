#pragma once
// bf16 GEMM with fp32 accumulation: the arithmetic of a matmul on bf16
// tensors (PyTorch on bf16, bitsandbytes 4-bit with compute_dtype bfloat16),
//   c[i, j] = col_scale[j] · Σ_k bf16(a[i, k]) · bf16(b[j, k]) + bias[j],
// every product exact in fp32 (8-bit × 8-bit significands), sums in fp32.
//
// Why our own kernel: Debian's OpenBLAS 0.3.21 is built without sbgemm. On
// Zen 4 / Cooper Lake and later, vdpbf16ps does 32 multiply-adds per
// instruction against vfmadd231ps's 16, so a prompt-sized product (rows ≥ 16,
// compute-bound) runs up to twice as fast as sgemm on the same weights.
//
// Layouts: a is row-major [m, kp] bf16 (kp = k rounded up to even, zero
// padded); b is packed in panels of 16 output channels, panel p holding
// b[16p + c, 2q + e] at ((p·kp/2 + q)·16 + c)·2 + e: one 64-byte load feeds
// 16 outputs with a pair of k. Padding is zero, so it adds nothing.
#include <cstdint>

namespace gpt2q::cpu {

inline int64_t bf16_padded_k(int64_t k) { return k + (k & 1); }
inline int64_t bf16_panels(int64_t n) { return (n + 15) / 16; }
// uint16 elements of a packed b of n rows of k.
inline int64_t bf16_packed_b_elems(int64_t n, int64_t k) { return bf16_panels(n) * 16 * bf16_padded_k(k); }

// True where the CPU runs vdpbf16ps (AVX512_BF16 with F/BW/VL) and the
// emulation below is off.
bool has_native_bf16_gemm();
// Tests: make has_native_bf16_gemm() false, so callers take their portable
// path (what CPUs without AVX512_BF16 run). Process-wide; not thread-safe.
void set_bf16_gemm_emulation(bool on);

// a[m, k] fp32 -> dst[m, kp] bf16, rounded to nearest even as PyTorch's
// .to(bfloat16) (the AVX-512 conversion also flushes subnormals to zero).
void bf16_pack_rows(const float* a, int64_t m, int64_t k, uint16_t* dst);
// b[n, k] fp32 -> the panel layout above, rounded the same way.
void bf16_pack_panels(const float* b, int64_t n, int64_t k, uint16_t* dst);
// The scalar versions of both (the reference the fast ones are tested against).
void bf16_pack_rows_scalar(const float* a, int64_t m, int64_t k, uint16_t* dst);
void bf16_pack_panels_scalar(const float* b, int64_t n, int64_t k, uint16_t* dst);

// c[i, j] (row stride ldc) from packed a and b; col_scale and bias may be
// null. Needs has_native_bf16_gemm(); single-threaded (callers split n).
void gemm_bf16_packed(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t k, const float* col_scale,
                      const float* bias, float* c, int64_t ldc);

// The scalar reference: the same rounding of a and b, products and sums in
// double. Any correct bf16 GEMM is within fp32 summation error of it.
void gemm_bf16_reference(const float* a, int64_t m, const float* b, int64_t n, int64_t k, const float* col_scale,
                         const float* bias, float* c, int64_t ldc);

namespace detail {
void bf16_pack_rows_avx512bf16(const float* a, int64_t m, int64_t k, uint16_t* dst);
void bf16_pack_panels_avx512bf16(const float* b, int64_t n, int64_t k, uint16_t* dst);
void gemm_bf16_packed_avx512bf16(const uint16_t* a, int64_t m, const uint16_t* b, int64_t n, int64_t k,
                                 const float* col_scale, const float* bias, float* c, int64_t ldc);
}

}  // namespace gpt2q::cpu
