#include "quant/half_linear.h"

#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "quant/half_simd.h"

namespace gpt2q::quant {

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
void fused(const uint16_t* w, int64_t K, int64_t N, const float* bias, const float* x, int64_t rows, float* y) {
  const int64_t tiles = (N + kFusedTile - 1) / kFusedTile;
#pragma omp parallel for schedule(static) if (K * N >= cpu::kParallelMinElements)
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
#pragma omp parallel for schedule(static) if (n >= cpu::kParallelMinStreamed)
  for (int64_t i = 0; i < n8; ++i) _mm256_storeu_ps(dst + 8 * i, load8_16bit(src + 8 * i, bf16));
  for (int64_t i = n8 * 8; i < n; ++i) dst[i] = to_float_16bit(src[i], bf16);
}

}  // namespace

HalfLinear::HalfLinear(Tensor weight_in_out, std::vector<float> bias)
    : w_(std::move(weight_in_out)), bias_(std::move(bias)), bf16_(w_.dtype() == DType::BF16) {
  GPT2Q_CHECK(w_.defined() && w_.ndim() == 2 && (w_.dtype() == DType::F16 || w_.dtype() == DType::BF16),
              "16-bit linear: the weight must be a 2-D F16 or BF16 tensor [in, out]");
  GPT2Q_CHECK(w_.device() == Device::CPU, "16-bit linear: the weight must be on the CPU");
  GPT2Q_CHECK(bias_.empty() || static_cast<int64_t>(bias_.size()) == w_.dim(1), "bias of {} for {} outputs",
              bias_.size(), w_.dim(1));
}

void HalfLinear::forward(const float* x, int64_t rows, float* y) const {
  if (rows == 0) return;
  if (rows <= kFusedMaxRows) return forward_fused(x, rows, y);
  forward_blocked(x, rows, y);
}

void HalfLinear::forward_fused(const float* x, int64_t rows, float* y) const {
  const uint16_t* w = w_.data<uint16_t>();
  const float* b = bias_.empty() ? nullptr : bias_.data();
  if (bf16_)
    fused<true>(w, in_features(), out_features(), b, x, rows, y);
  else
    fused<false>(w, in_features(), out_features(), b, x, rows, y);
}

void HalfLinear::forward_blocked(const float* x, int64_t rows, float* y) const {
  const int64_t K = in_features(), N = out_features();
  if (N == 0) return;
  const uint16_t* w = w_.data<uint16_t>();
  if (!bias_.empty()) {
#pragma omp parallel for schedule(static) if (rows * N >= cpu::kParallelMinStreamed)
    for (int64_t i = 0; i < rows; ++i) std::memcpy(y + i * N, bias_.data(), sizeof(float) * N);
  }
  if (K == 0) {
    if (bias_.empty()) std::memset(y, 0, sizeof(float) * rows * N);
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
    convert(w + k0 * N, kb * N, bf16_, buffer.data());
    const float beta = k0 > 0 || !bias_.empty() ? 1.0f : 0.0f;
    cpu::sgemm_nn(rows, N, kb, 1.0f, x + k0, K, buffer.data(), N, beta, y, N);
  }
}

}  // namespace gpt2q::quant

