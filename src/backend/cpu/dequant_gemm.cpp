#include "backend/cpu/dequant_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/gemm_bf16.h"
#include "core/error.h"
#include "core/half.h"

namespace gpt2q::cpu {

namespace {

// sgemm packs x (the rows) again on every call, a cost of one copy per
// 2·n flops for a tile of n weight rows, so tiles are wide: 192 rows
// (< 2.4 MiB of fp32 for in <= 3072). 192 divides GPT-2's 768, 2304 and
// 3072 into an even number of tiles, which two threads share evenly. The
// tiling never depends on the thread count, so neither do the results.
constexpr int64_t kTileRows = 192;
// x is taken kRowBlock rows at a time: sgemm also packs the tile on every
// call (one copy per 2·rows flops), so blocks are long, but bounded so that
// a 32x128 batch does not stream its whole 4096-row x once per tile.
constexpr int64_t kRowBlock = 512;

// One buffer per thread, kept between calls (the pool's threads persist).
template <class T>
T* thread_buffer(int64_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < static_cast<size_t>(n)) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

void round_to_bf16(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = bf16_to_float(float_to_bf16(v[i]));
}

// y[:, j] = y[:, j] · col_scale[j] + bias[j] over columns j0..j0+n.
void scale_and_bias(float* y, int64_t rows, int64_t ld, int64_t j0, int64_t n, const float* col_scale,
                    const float* bias) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = j0; j < j0 + n; ++j) {
      float v = y[i * ld + j];
      if (col_scale) v *= col_scale[j];
      if (bias) v += bias[j];
      y[i * ld + j] = v;
    }
}

// BF16 compute with vdpbf16ps: x converted once, each tile decoded, packed
// into 16-channel panels and multiplied.
void tiled_bf16_native(const float* x, int64_t rows, int64_t in, int64_t out, const float* bias,
                       const DecodeTile& decode, float* y, const float* col_scale) {
  const int64_t kp = cpu::bf16_padded_k(in);
  Tensor xb_t = cpu::scratch_tensor({rows, kp}, DType::BF16);
  uint16_t* xb = xb_t.data<uint16_t>();
#pragma omp parallel for schedule(static) if (rows * in >= cpu::kParallelMinStreamed)
  for (int64_t i = 0; i < rows; ++i) cpu::bf16_pack_rows(x + i * in, 1, in, xb + i * kp);
  const int64_t tile = std::min(kTileRows, out);
  const int64_t tiles = (out + tile - 1) / tile;
#pragma omp parallel for schedule(static) if (tiles > 1)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t j0 = t * tile, j1 = std::min(out, j0 + tile), n = j1 - j0;
    // Decoded and packed one 16-channel panel at a time: the fp32 rows
    // (<= 192 KiB at in = 3072) stay in L2 between the two.
    float* buf = thread_buffer<float>(16 * in);
    uint16_t* packed = thread_buffer<uint16_t>(cpu::bf16_packed_b_elems(n, in));
    for (int64_t p0 = 0; p0 < n; p0 += 16) {
      const int64_t np = std::min<int64_t>(16, n - p0);
      decode(j0 + p0, j0 + p0 + np, buf);
      cpu::bf16_pack_panels(buf, np, in, packed + p0 * cpu::bf16_padded_k(in));
    }
    for (int64_t i0 = 0; i0 < rows; i0 += kRowBlock) {
      const int64_t m = std::min(kRowBlock, rows - i0);
      cpu::gemm_bf16_packed(xb + i0 * kp, m, packed, n, in, col_scale ? col_scale + j0 : nullptr,
                            bias ? bias + j0 : nullptr, y + i0 * out + j0, out);
    }
  }
}

}  // namespace

void tiled_dequant_gemm(const float* x, int64_t rows, int64_t in, int64_t out, const float* bias,
                        const DecodeTile& decode, float* y, const TiledGemmOptions& options) {
  if (rows == 0 || out == 0) return;
  GPT2Q_CHECK(options.compute == DType::F32 || options.compute == DType::BF16,
              "tiled_dequant_gemm: compute dtype {} (F32 or BF16)", dtype_name(options.compute));
  const bool bf16 = options.compute == DType::BF16;
  if (bf16 && cpu::has_native_bf16_gemm()) {
    tiled_bf16_native(x, rows, in, out, bias, decode, y, options.col_scale);
    return;
  }
  // fp32, or bf16 emulated: the same rounded operands through sgemm.
  Tensor xr_t;
  if (bf16) {
    xr_t = cpu::scratch_tensor({rows, in}, DType::F32);
    std::copy(x, x + rows * in, xr_t.data<float>());
    round_to_bf16(xr_t.data<float>(), rows * in);
    x = xr_t.data<float>();
  }
  // With a col_scale, sgemm writes the raw product and the bias goes after.
  const float* gemm_bias = options.col_scale ? nullptr : bias;
  const int64_t tile = std::min(kTileRows, out);
  const int64_t tiles = (out + tile - 1) / tile;
#pragma omp parallel for schedule(static) if (tiles > 1)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t j0 = t * tile, j1 = std::min(out, j0 + tile), n = j1 - j0;
    float* buf = thread_buffer<float>(n * in);
    decode(j0, j1, buf);
    if (bf16) round_to_bf16(buf, n * in);
    if (gemm_bias)
      for (int64_t i = 0; i < rows; ++i) std::memcpy(y + i * out + j0, gemm_bias + j0, sizeof(float) * n);
    for (int64_t i0 = 0; i0 < rows; i0 += kRowBlock) {
      const int64_t m = std::min(kRowBlock, rows - i0);
      cpu::sgemm_nt(m, n, in, 1.0f, x + i0 * in, in, buf, in, gemm_bias ? 1.0f : 0.0f, y + i0 * out + j0, out);
    }
    if (options.col_scale) scale_and_bias(y, rows, out, j0, n, options.col_scale, bias);
  }
}

}  // namespace gpt2q::cpu
