#include "backend/cpu/half_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dequant_gemm.h"
#include "backend/cpu/half_simd.h"
#include "core/error.h"

namespace gpt2q::cpu {

namespace {

// Fused kernel: the columns one task computes, 4 AVX registers of
// accumulators per row (the weight tile stays in L1/L2 across rows).
constexpr int64_t kFusedTile = 32;
// Blocked path: the fp32 block of weight rows converted for one sgemm holds
// at most this many bytes (a few sgemm K-panels: OpenBLAS splits K about as
// finely itself, so the extra passes over y cost little).
constexpr int64_t kBlockMaxBytes = int64_t{1} << 22;

// yi[0 .. 8V) = bias + Σ_k xi[k] · W[k, 0 .. 8V), for w = &W[0, j0] with row
// stride n: the weight streams once, converted in registers.
template <bool BF16, int V>
inline void fused_columns(const uint16_t* w, int64_t n, int64_t k_len, const float* xi, const float* bias,
                          float* yi) {
  __m256 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = bias ? _mm256_loadu_ps(bias + 8 * v) : _mm256_setzero_ps();
  for (int64_t k = 0; k < k_len; ++k) {
    const __m256 xv = _mm256_set1_ps(xi[k]);
    const uint16_t* wk = w + k * n;
    for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(xv, load8_16bit(wk + 8 * v, BF16), acc[v]);
  }
  for (int v = 0; v < V; ++v) _mm256_storeu_ps(yi + 8 * v, acc[v]);
}

template <bool BF16>
void linear_fused(const uint16_t* w, int64_t K, int64_t N, const float* bias, const float* x, int64_t rows,
                  float* y) {
  const int64_t tiles = (N + kFusedTile - 1) / kFusedTile;
#pragma omp parallel for schedule(static) if (K * N >= kParallelMinElements)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t j0 = t * kFusedTile, nb = std::min(kFusedTile, N - j0);
    for (int64_t i = 0; i < rows; ++i) {
      const float* xi = x + i * K;
      float* yi = y + i * N + j0;
      const float* b = bias ? bias + j0 : nullptr;
      if (nb == kFusedTile) {
        fused_columns<BF16, kFusedTile / 8>(w + j0, N, K, xi, b, yi);
        continue;
      }
      int64_t j = 0;
      for (; j + 8 <= nb; j += 8) fused_columns<BF16, 1>(w + j0 + j, N, K, xi, b ? b + j : nullptr, yi + j);
      for (; j < nb; ++j) {
        float s = b ? b[j] : 0.0f;
        for (int64_t k = 0; k < K; ++k) s += xi[k] * to_float_16bit(w[k * N + j0 + j], BF16);
        yi[j] = s;
      }
    }
  }
}

// dst[0 .. n) = src[0 .. n) as fp32 (exact conversions); a streaming loop,
// so small blocks stay on one thread.
void convert(const uint16_t* src, int64_t n, bool bf16, float* dst) {
  const int64_t n8 = n / 8;
#pragma omp parallel for schedule(static) if (n >= kParallelMinStreamed)
  for (int64_t i = 0; i < n8; ++i) _mm256_storeu_ps(dst + 8 * i, load8_16bit(src + 8 * i, bf16));
  for (int64_t i = n8 * 8; i < n; ++i) dst[i] = to_float_16bit(src[i], bf16);
}

void linear_blocked(const uint16_t* w, int64_t K, int64_t N, const float* bias, const float* x, int64_t rows,
                    bool bf16, float* y) {
  if (bias) {
#pragma omp parallel for schedule(static) if (rows * N >= kParallelMinStreamed)
    for (int64_t i = 0; i < rows; ++i) std::memcpy(y + i * N, bias, sizeof(float) * N);
  }
  if (K == 0) {
    if (!bias) std::memset(y, 0, sizeof(float) * rows * N);
    return;
  }
  // Blocks of whole weight rows (contiguous in [in, out]), as even as the
  // size limit allows; each is converted, then y += x[:, block] · block.
  const int64_t max_rows = std::max<int64_t>(1, kBlockMaxBytes / (4 * N));
  const int64_t blocks = (K + max_rows - 1) / max_rows, block_rows = (K + blocks - 1) / blocks;
  thread_local std::vector<float> buffer;  // reused across calls: no page faults per product
  if (buffer.size() < static_cast<size_t>(block_rows * N)) buffer.resize(static_cast<size_t>(block_rows * N));
  for (int64_t k0 = 0; k0 < K; k0 += block_rows) {
    const int64_t kb = std::min(block_rows, K - k0);
    convert(w + k0 * N, kb * N, bf16, buffer.data());
    const float beta = k0 > 0 || bias ? 1.0f : 0.0f;
    sgemm_nn(rows, N, kb, 1.0f, x + k0, K, buffer.data(), N, beta, y, N);
  }
}

// Few rows (decoding): read the table once, converting in registers; each
// output is one fp32 dot product in a fixed order.
void matmul_nt_fused(const float* x, int64_t m, int64_t C, const uint16_t* src, bool bf16, int64_t R, float* y) {
  const int64_t C8 = C / 8 * 8;
#pragma omp parallel for schedule(static) if (R * C >= kParallelMinElements)
  for (int64_t j = 0; j < R; ++j) {
    const uint16_t* row = src + j * C;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * C;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t k = 0; k < C8; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(xi + k), load8_16bit(row + k, bf16), acc);
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc);
      float s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
      for (int64_t k = C8; k < C; ++k) s += xi[k] * to_float_16bit(row[k], bf16);
      y[i * R + j] = s;
    }
  }
}

// Many rows: tiles of the table converted to fp32 for sgemm (dequant_gemm.h).
void matmul_nt_blocked(const float* x, int64_t m, int64_t C, const uint16_t* src, bool bf16, int64_t R, float* y) {
  const int64_t C8 = C / 8 * 8;
  tiled_dequant_gemm(
      x, m, C, R, nullptr,
      [&](int64_t j0, int64_t j1, float* dst) {
        for (int64_t j = j0; j < j1; ++j) {
          const uint16_t* row = src + j * C;
          float* d = dst + (j - j0) * C;
          for (int64_t k = 0; k < C8; k += 8) _mm256_storeu_ps(d + k, load8_16bit(row + k, bf16));
          for (int64_t k = C8; k < C; ++k) d[k] = to_float_16bit(row[k], bf16);
        }
      },
      y);
}

}  // namespace

void linear_16bit(const float* x, int64_t rows, int64_t in, const uint16_t* w, bool bf16, const float* bias,
                  int64_t out, float* y) {
  if (rows == 0 || out == 0) return;
  if (rows > kHalfLinearFusedMaxRows) return linear_blocked(w, in, out, bias, x, rows, bf16, y);
  if (bf16)
    linear_fused<true>(w, in, out, bias, x, rows, y);
  else
    linear_fused<false>(w, in, out, bias, x, rows, y);
}

void matmul_nt_16bit(const float* a, int64_t m, int64_t k, const uint16_t* b, bool bf16, int64_t n, float* c) {
  if (m == 0 || n == 0) return;
  if (m <= kHalfTableFusedMaxRows) return matmul_nt_fused(a, m, k, b, bf16, n, c);
  matmul_nt_blocked(a, m, k, b, bf16, n, c);
}

void gather_rows_16bit(const uint16_t* table, bool bf16, int64_t cols, const int64_t* idx, int64_t n, float* out,
                       bool accumulate) {
#pragma omp parallel for schedule(static) if (n * cols >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* row = table + idx[i] * cols;
    float* o = out + i * cols;
    for (int64_t k = 0; k < cols; ++k) {
      const float v = to_float_16bit(row[k], bf16);
      o[k] = accumulate ? o[k] + v : v;
    }
  }
}

void convert_dtype(const void* in, DType in_dtype, void* out, DType out_dtype, int64_t n) {
  auto read = [&](int64_t i) -> float {
    switch (in_dtype) {
      case DType::F32: return static_cast<const float*>(in)[i];
      case DType::F16: return half_to_float(static_cast<const uint16_t*>(in)[i]);
      case DType::BF16: return bf16_to_float(static_cast<const uint16_t*>(in)[i]);
      default: fail("convert: unsupported dtype {}", dtype_name(in_dtype));
    }
  };
  if (out_dtype != DType::F32 && out_dtype != DType::F16 && out_dtype != DType::BF16)
    fail("convert: unsupported dtype {}", dtype_name(out_dtype));
  for (int64_t i = 0; i < n; ++i) {
    const float v = read(i);
    if (out_dtype == DType::F32) static_cast<float*>(out)[i] = v;
    else if (out_dtype == DType::F16) static_cast<uint16_t*>(out)[i] = float_to_half(v);
    else static_cast<uint16_t*>(out)[i] = float_to_bf16(v);
  }
}

void gather_rows_f32(const float* table, int64_t cols, const int64_t* idx, int64_t n, float* out, bool accumulate) {
#pragma omp parallel for schedule(static) if (n * cols >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = table + idx[i] * cols;
    float* o = out + i * cols;
    if (accumulate) {
      for (int64_t k = 0; k < cols; ++k) o[k] += row[k];
    } else {
      std::memcpy(o, row, sizeof(float) * cols);
    }
  }
}

}  // namespace gpt2q::cpu
