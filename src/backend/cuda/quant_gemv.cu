// The fused dequantize + GEMV (quant_gemv.h), from dev/cuda/quant_gemv.cu:
// its `vec` candidates r1u1 / r1u4 / r4u1 (one warp per R output rows, each
// lane U 16-byte chunks of codes per step, every load issued before the
// math) and its `fallback` (one element per lane per step, any shape), with
// the harness's automatic choice. Left out of the product: the harness's
// `factored` candidate (block scale applied per partial sum: not the exact
// w') and its dense fp16 baseline (cuBLASLt runs dense weights).
//
// Why our own kernel and not cuBLASLt: a GEMV reads each weight once, and a
// packed weight read once is 1/4 (NF4) or 1/2 (int8) of fp16's bytes; going
// through cuBLASLt means writing and re-reading a decoded fp16 copy first.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/linear_epilogue.cuh"
#include "backend/cuda/quant_gemv.h"
#include "backend/cuda/warp_reduce.cuh"

namespace gpt2q::cuda {

namespace {

using backend::Activation;
using qformat::Scheme;

enum class Kind { q4, i8 };

// What a launch reads, by value. Passed as a __grid_constant__ parameter, so
// that the table and map below are indexed in parameter memory (copied to
// shared memory once per block) instead of being copied to local memory per
// thread.
struct Params {
  const uint8_t* codes;      // q4: packed nibbles; i8: int8 [out, in]
  const float* absmax;       // q4 plain absmax [blocks] (null with double quant)
  const uint8_t* dq_q;       // q4 double quant: code per block, or null
  const float* dq_state2;    // q4 double quant: nested scales
  float dq_offset;
  int dq_blocksize;
  int64_t blocksize;         // q4
  int blocksize_log2;        // q4, vec kernels (power-of-two block size)
  float table[16];           // q4 code table
  float map[256];            // q4 double quant: the dynamic map
  const float* scale;        // i8: [1] or [out]
  const int32_t* zero_point; // i8: [1] or [out], or null (symmetric)
  int per_channel;
  int out, in, rows;         // rows <= 8
  const void* x;             // [rows, in] of XT
  const void* bias;          // [out] of bias_dtype, or null
  DType bias_dtype;
  void* y;                   // [rows, out] of y_dtype
  DType y_dtype;
  Activation activation;
  bool accumulate;           // y += result
};

constexpr int kWarps = 4;  // warps per block: 128 threads

template <Kind K>
constexpr int kEpw = K == Kind::q4 ? 8 : 4;  // elements per 32-bit word of codes

// N consecutive activations (N = 4 or 8, p aligned to N elements) as fp32,
// through the read-only path: x is small and re-read by every warp.
template <typename T, int N>
__device__ __forceinline__ void load_x(const T* p, float (&v)[N]) {
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(p) + i);
      v[4 * i] = a.x, v[4 * i + 1] = a.y, v[4 * i + 2] = a.z, v[4 * i + 3] = a.w;
    }
  } else {
    uint32_t w[N / 2];
    if constexpr (N == 4) {
      const uint2 a = __ldg(reinterpret_cast<const uint2*>(p));
      w[0] = a.x, w[1] = a.y;
    } else {
      const uint4 a = __ldg(reinterpret_cast<const uint4*>(p));
      w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w;
    }
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      T pair[2];
      memcpy(pair, &w[i], 4);
      v[2 * i] = to_float(pair[0]);
      v[2 * i + 1] = to_float(pair[1]);
    }
  }
}

// The 4-bit table lookup by byte offset (code · 4): saves a shift per code.
__device__ __forceinline__ float table_at(const float* table, uint32_t byte_offset) {
  return *reinterpret_cast<const float*>(reinterpret_cast<const char*>(table) + byte_offset);
}

// One 32-bit word of codes as kEpw<K> exact weight values w'.
// q4: byte i holds element 2i in its high nibble and 2i + 1 in its low one;
// w' = table[code] · absmax (one rounding). i8: w' = float(q - zp) · scale,
// float(q - zp) exact by the magic number (see the kernel).
template <Kind K>
__device__ __forceinline__ void decode_word(uint32_t w, float s, float magic, const float* table,
                                            float (&v)[kEpw<K>]) {
  if constexpr (K == Kind::q4) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = table_at(table, (w >> (8 * i + 2)) & 0x3Cu);
      v[2 * i + 1] = table_at(table, (i == 0 ? (w << 2) : (w >> (8 * i - 2))) & 0x3Cu);
    }
  } else {
    // q + 128 in the low mantissa bits of 2^23 is exactly 2^23 + q + 128;
    // minus magic = 2^23 + 128 + zp leaves float(q - zp) exactly
    // (|zp| <= 2^22; the formats keep it within 2^15). Cheaper than I2F.
    const uint32_t u = w ^ 0x80808080u;
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = __fsub_rn(__int_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | i)), magic);
  }
#pragma unroll
  for (int e = 0; e < kEpw<K>; ++e) v[e] = __fmul_rn(v[e], s);  // never contracted into the FMA that follows
}

__device__ __forceinline__ uint32_t word_of(const uint4& q, int w) {
  return w == 0 ? q.x : w == 1 ? q.y : w == 2 ? q.z : q.w;
}

// The block scale of flattened element e of a 4-bit weight.
__device__ __forceinline__ float block_absmax(const Params& p, const float* s_map, int64_t b) {
  return p.dq_q ? __fadd_rn(__fmul_rn(s_map[__ldg(p.dq_q + b)], __ldg(p.dq_state2 + b / p.dq_blocksize)),
                            p.dq_offset)
                : __ldg(p.absmax + b);
}

// One warp per R output rows j0..j0+R-1, MT activation rows (>= p.rows,
// padded rows re-read the last real one and are not stored). Each step a
// lane reads U 16-byte chunks of codes per output row (32 NF4 / 16 int8
// values each). A chunk never straddles a 4-bit block: chunks start at
// multiples of 32 elements and blocks are powers of two >= 32.
template <Kind K, typename XT, int MT, int R, int U>
__global__ void __launch_bounds__(kWarps * 32) gemv_vec(const __grid_constant__ Params p) {
  constexpr int EPW = kEpw<K>, EPC = 4 * EPW;  // elements per word, per chunk
  __shared__ float s_table[16];
  __shared__ float s_map[256];
  if constexpr (K == Kind::q4) {
    if (threadIdx.x < 16) s_table[threadIdx.x] = p.table[threadIdx.x];
    if (p.dq_q)
      for (int i = threadIdx.x; i < 256; i += blockDim.x) s_map[i] = p.map[i];
    __syncthreads();
  }
  const int lane = threadIdx.x & 31;
  const int j0 = (blockIdx.x * kWarps + static_cast<int>(threadIdx.x >> 5)) * R;
  if (j0 >= p.out) return;  // after the only barrier
  const int C = p.in / EPC;
  const size_t row_bytes = K == Kind::q4 ? static_cast<size_t>(p.in) / 2 : static_cast<size_t>(p.in);
  const XT* x = static_cast<const XT*>(p.x);

  float magic[R], rscale[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    magic[r] = 0.0f, rscale[r] = 0.0f;
    if constexpr (K == Kind::i8) {
      const int j = min(j0 + r, p.out - 1), g = p.per_channel ? j : 0;
      magic[r] = __int2float_rn(8388736 + (p.zero_point ? __ldg(p.zero_point + g) : 0));
      rscale[r] = __ldg(p.scale + g);
    }
  }

  float acc[R][MT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[r][m] = 0.0f;

  for (int cb = 0; cb < C; cb += 32 * U) {
    uint4 q[R][U];
    float sc[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = cb + 32 * u + lane, j = j0 + r;
        q[r][u] = make_uint4(0, 0, 0, 0);  // past the end: zero codes and scale add +-0
        sc[r][u] = 0.0f;
        if (c < C && j < p.out) {
          sc[r][u] = rscale[r];
          // Streaming load: each weight is read once per call; L1 keeps x.
          q[r][u] = __ldcs(reinterpret_cast<const uint4*>(p.codes + j * row_bytes + static_cast<size_t>(c) * 16));
          if constexpr (K == Kind::q4)
            sc[r][u] = block_absmax(p, s_map, (static_cast<int64_t>(j) * p.in + static_cast<int64_t>(c) * EPC) >>
                                                  p.blocksize_log2);
        }
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (cb + 32 * u >= C) break;  // warp-uniform
      // Lanes past the row end compute on zero codes with a zero scale and
      // read x at the last chunk: no divergent branch here.
      const int c = min(cb + 32 * u + lane, C - 1);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        float wv[R][EPW];
#pragma unroll
        for (int r = 0; r < R; ++r) decode_word<K>(word_of(q[r][u], w), sc[r][u], magic[r], s_table, wv[r]);
        const int k = c * EPC + w * EPW;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          float xv[EPW];
          load_x<XT, EPW>(x + static_cast<size_t>(min(m, p.rows - 1)) * p.in + k, xv);
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int e = 0; e < EPW; ++e) acc[r][m] = fmaf(xv[e], wv[r][e], acc[r][m]);
        }
      }
    }
  }

  reduce_and_finish(p, acc, j0, lane);
}

// Any shape, block size and alignment: one warp per output row, one element
// per lane per step, up to 8 activation rows.
template <Kind K, typename XT>
__global__ void __launch_bounds__(kWarps * 32) gemv_fallback(const __grid_constant__ Params p) {
  __shared__ float s_map[256];
  if constexpr (K == Kind::q4) {
    if (p.dq_q)
      for (int i = threadIdx.x; i < 256; i += blockDim.x) s_map[i] = p.map[i];
    __syncthreads();
  }
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * kWarps + static_cast<int>(threadIdx.x >> 5);
  if (j >= p.out) return;
  const XT* x = static_cast<const XT*>(p.x);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int k = lane; k < p.in; k += 32) {
    const int64_t e = static_cast<int64_t>(j) * p.in + k;
    float w;
    if constexpr (K == Kind::q4) {
      w = __fmul_rn(p.table[qformat::code4_at(p.codes, e)], block_absmax(p, s_map, e / p.blocksize));
    } else {
      const int g = p.per_channel ? j : 0;
      const int zp = p.zero_point ? p.zero_point[g] : 0;
      w = __fmul_rn(static_cast<float>(static_cast<int>(reinterpret_cast<const int8_t*>(p.codes)[e]) - zp),
                    p.scale[g]);
    }
#pragma unroll
    for (int m = 0; m < 8; ++m)
      if (m < p.rows) acc[m] = fmaf(to_float(x[static_cast<size_t>(m) * p.in + k]), w, acc[m]);
  }
  const float total = warp_reduce_scatter(acc);  // lane l: row l >> 2
  if ((lane & 3) == 0 && (lane >> 2) < p.rows) finish_output(p, lane >> 2, j, total);
}

enum class Config { r1u1, r1u4, r4u1, fallback };

template <Kind K, typename XT, int MT>
void launch_vec(Config c, const Params& p, cudaStream_t s) {
  auto go = [&](auto kernel, int R) {
    const int warps = (p.out + R - 1) / R;
    kernel<<<(warps + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(p);
  };
  if (c == Config::r1u1) go(gemv_vec<K, XT, MT, 1, 1>, 1);
  else if (c == Config::r1u4) go(gemv_vec<K, XT, MT, 1, 4>, 1);
  else go(gemv_vec<K, XT, MT, 4, 1>, 4);
}

template <Kind K, typename XT>
void launch(Config c, const Params& p, cudaStream_t s) {
  if (c == Config::fallback) {
    gemv_fallback<K, XT><<<(p.out + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(p);
  } else if (p.rows <= 1) {
    launch_vec<K, XT, 1>(c, p, s);
  } else if (p.rows <= 2) {
    launch_vec<K, XT, 2>(c, p, s);
  } else if (p.rows <= 4) {
    launch_vec<K, XT, 4>(c, p, s);
  } else {
    launch_vec<K, XT, 8>(c, p, s);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

bool quant_gemv_supports(const backend::QuantLinearArgs& a) {
  const qformat::Format& f = a.w.format;
  const bool float_type = a.x_dtype == DType::F32 || a.x_dtype == DType::F16 || a.x_dtype == DType::BF16;
  return (f.scheme == Scheme::blockwise4 || f.scheme == Scheme::int8_affine) && a.rows >= 1 &&
         a.rows <= kQuantGemvMaxRows && f.in >= 1 && f.in < (int64_t{1} << 30) && f.out < (int64_t{1} << 30) &&
         float_type && !(a.epilogue.accumulate && a.epilogue.activation != Activation::none);
}

void quant_gemv(const backend::QuantLinearArgs& a, cudaStream_t stream) {
  if (!quant_gemv_supports(a)) fail_bad_value("quant_gemv: unsupported arguments, rows", a.rows);
  const qformat::Format& f = a.w.format;
  Params p{};
  const bool q4 = f.scheme == Scheme::blockwise4;
  p.codes = static_cast<const uint8_t*>(a.w.codes);
  if (q4) {
    p.blocksize = f.blocksize;
    std::memcpy(p.table, qformat::code4_values(f.code), sizeof p.table);
    if (f.nested) {
      p.dq_q = a.w.nested_codes;
      p.dq_state2 = a.w.nested_scales;
      p.dq_offset = f.nested_offset;
      p.dq_blocksize = static_cast<int>(f.nested_blocksize);
      std::memcpy(p.map, qformat::kDynamicMapSigned, sizeof p.map);
    } else {
      p.absmax = a.w.scales;
    }
  } else {
    p.scale = a.w.scales;
    p.zero_point = f.symmetric ? nullptr : a.w.zero_points;
    p.per_channel = f.per_channel ? 1 : 0;
  }
  p.out = static_cast<int>(f.out);
  p.in = static_cast<int>(f.in);
  p.rows = static_cast<int>(a.rows);
  p.x = a.x;
  p.bias = a.bias;
  p.bias_dtype = a.bias_dtype;
  p.y = a.y;
  p.y_dtype = a.y_dtype;
  p.activation = a.epilogue.activation;
  p.accumulate = a.epilogue.accumulate;

  // The harness's choice (dev/cuda/QUANT_NOTES.md): 4 rows per warp for
  // wide outputs (the LM head), 4 chunks per lane for long rows, else 1.
  const int values_per_chunk = q4 ? 32 : 16;
  const bool pow2_blocks = !q4 || (f.blocksize >= 32 && (f.blocksize & (f.blocksize - 1)) == 0);
  Config c = Config::fallback;
  if (f.in % values_per_chunk == 0 && aligned16(p.codes) && aligned16(a.x) && pow2_blocks) {
    const int chunks = p.in / values_per_chunk;
    c = p.out >= 8192 ? Config::r4u1 : chunks > 32 ? Config::r1u4 : Config::r1u1;
    if (q4) p.blocksize_log2 = __builtin_ctzll(static_cast<unsigned long long>(f.blocksize));
  }
  auto by_x = [&](auto kind) {
    constexpr Kind K = decltype(kind)::value;
    with_float_type(
        a.x_dtype, [&](auto tag) { launch<K, decltype(tag)>(c, p, stream); },
        [] { fail_bad_value("quant_gemv: activation dtype", 0); });
  };
  if (q4) by_x(std::integral_constant<Kind, Kind::q4>{});
  else by_x(std::integral_constant<Kind, Kind::i8>{});
  check_launch("quant_gemv kernel");
}

}  // namespace gpt2q::cuda
