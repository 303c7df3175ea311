#include "backend/cpu/bf16_linear.h"

#include <algorithm>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dequant_gemm.h"
#include "backend/cpu/gemm_bf16.h"
#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"

namespace gpt2q::cpu {

namespace {

// Output channels per tile of the native path: 192 as dequant_gemm.cpp
// (divides 768, 2304 and 3072 into an even number of tiles), a multiple of
// the 16-channel panels so each tile starts on a panel.
constexpr int64_t kTile = 192;
constexpr int64_t kRowBlock = 512;

// Index of W'[k, j] in the panel layout of gemm_bf16.h.
inline int64_t packed_index(int64_t kp, int64_t k, int64_t j) {
  return (((j / 16) * (kp / 2) + k / 2) * 16 + j % 16) * 2 + (k & 1);
}

float read_weight(const void* w, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(w)[i];
    case DType::F16: return half_to_float(static_cast<const uint16_t*>(w)[i]);
    default: return bf16_to_float(static_cast<const uint16_t*>(w)[i]);
  }
}

}  // namespace

int64_t bf16_linear_packed_elems(int64_t in, int64_t out) { return bf16_packed_b_elems(out, in); }

float bf16_linear_weight_at(const uint16_t* packed, int64_t in, int64_t k, int64_t j) {
  return bf16_to_float(packed[packed_index(bf16_padded_k(in), k, j)]);
}

void bf16_linear_pack_weight(const void* w, DType w_dtype, int64_t in, int64_t out, uint16_t* dst) {
  GPT2Q_CHECK(w_dtype == DType::F32 || w_dtype == DType::F16 || w_dtype == DType::BF16,
              "bf16_linear_pack_weight: weight dtype {}", dtype_name(w_dtype));
  const int64_t kp = bf16_padded_k(in), panels = bf16_panels(out);
  // Padding (channels past `out`, the odd k's partner) must be zero: it
  // enters the products.
  std::fill(dst, dst + bf16_linear_packed_elems(in, out), uint16_t{0});
#pragma omp parallel for schedule(static) if (in * out >= kParallelMinStreamed)
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t k = 0; k < in; ++k)
      for (int64_t j = 16 * p; j < std::min(out, 16 * p + 16); ++j) {
        const uint16_t v = w_dtype == DType::BF16 ? static_cast<const uint16_t*>(w)[k * out + j]
                                                  : float_to_bf16(read_weight(w, w_dtype, k * out + j));
        dst[packed_index(kp, k, j)] = v;
      }
}

void bf16_linear(const float* x, int64_t rows, const uint16_t* packed, int64_t in, int64_t out, const float* bias,
                 float* y) {
  if (rows == 0 || out == 0) return;
  const int64_t kp = bf16_padded_k(in);
  const bool bf16_rows = rows >= kTiledGemmMinRows;
  if (bf16_rows && has_native_bf16_gemm()) {
    // x rounded once; each tile's panels are already packed.
    Tensor xb_t = scratch_tensor({rows, kp}, DType::BF16);
    uint16_t* xb = xb_t.data<uint16_t>();
#pragma omp parallel for schedule(static) if (rows * in >= kParallelMinStreamed)
    for (int64_t i = 0; i < rows; ++i) bf16_pack_rows(x + i * in, 1, in, xb + i * kp);
    const int64_t tiles = (out + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (tiles > 1)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t j0 = t * kTile, n = std::min(kTile, out - j0);
      for (int64_t i0 = 0; i0 < rows; i0 += kRowBlock) {
        const int64_t m = std::min(kRowBlock, rows - i0);
        gemm_bf16_packed(xb + i0 * kp, m, packed + j0 * kp, n, in, nullptr, bias ? bias + j0 : nullptr,
                         y + i0 * out + j0, out);
      }
    }
    return;
  }
  // fp32 activations (few rows), or bf16 ones without the native kernel:
  // the weight decoded a tile at a time (exact) and multiplied by sgemm,
  // which rounds x to bf16 first when asked.
  tiled_dequant_gemm(
      x, rows, in, out, bias,
      [&](int64_t j0, int64_t j1, float* dst) {
        for (int64_t j = j0; j < j1; ++j)
          for (int64_t k = 0; k < in; ++k) dst[(j - j0) * in + k] = bf16_to_float(packed[packed_index(kp, k, j)]);
      },
      y, TiledGemmOptions{bf16_rows ? DType::BF16 : DType::F32});
}

void bf16_linear_reference(const float* x, int64_t rows, const uint16_t* packed, int64_t in, int64_t out,
                           const float* bias, float* y) {
  const bool bf16_rows = rows >= kTiledGemmMinRows;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < out; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < in; ++k) {
        const float xv = bf16_rows ? bf16_to_float(float_to_bf16(x[i * in + k])) : x[i * in + k];
        acc += static_cast<double>(xv) * static_cast<double>(bf16_linear_weight_at(packed, in, k, j));
      }
      float v = static_cast<float>(acc);
      if (bias) v += bias[j];
      y[i * out + j] = v;
    }
}

}  // namespace gpt2q::cpu
