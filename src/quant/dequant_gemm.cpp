#include "quant/dequant_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace gpt2q::quant {

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

}  // namespace

void tiled_dequant_gemm(const float* x, int64_t rows, int64_t in, int64_t out, const float* bias,
                        const DecodeTile& decode, float* y) {
  if (rows == 0 || out == 0) return;
  const int64_t tile = std::min(kTileRows, out);
  const int64_t tiles = (out + tile - 1) / tile;
#pragma omp parallel for schedule(static) if (tiles > 1)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t j0 = t * tile, j1 = std::min(out, j0 + tile), n = j1 - j0;
    // One buffer per thread, kept between calls (the pool's threads persist).
    thread_local std::vector<float> buf;
    if (buf.size() < static_cast<size_t>(n * in)) buf.resize(static_cast<size_t>(n * in));
    decode(j0, j1, buf.data());
    if (bias)
      for (int64_t i = 0; i < rows; ++i) std::memcpy(y + i * out + j0, bias + j0, sizeof(float) * n);
    for (int64_t i0 = 0; i0 < rows; i0 += kRowBlock) {
      const int64_t m = std::min(kRowBlock, rows - i0);
      cpu::sgemm_nt(m, n, in, 1.0f, x + i0 * in, in, buf.data(), in, bias ? 1.0f : 0.0f, y + i0 * out + j0, out);
    }
  }
}

}  // namespace gpt2q::quant
