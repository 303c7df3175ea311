// Fused dequantize + GEMV for few activation rows (batch-1 decode, short
// classification prompts): y[r, j] = epi(sum_k x[r, k] * w'[j, k] + bias[j])
// for r < rows, w' the weight dequantized in fp32 exactly as the format
// defines it (NF4/FP4 +- double quant, int8 affine/symmetric), fp32 sums.
//
// Candidates (--validate-only skips the benchmark):
//   vec r1u1 / r1u4 / r4u1: one warp per R output rows; each lane reads U
//     16-byte chunks of codes per step (all loads issued before any math),
//     decodes them word by word (NF4/FP4 through a 16-entry shared table:
//     16 distinct banks, so any mix of codes is conflict-free; int8 through
//     the 2^23 magic-number trick instead of the quarter-rate I2F), reuses
//     each activation load for its R rows, and ends with one warp
//     reduce-scatter of the R x MT sums. Needs in % (elements per 16 bytes)
//     == 0, 16-byte aligned pointers and, for 4-bit, a power-of-two block
//     size >= 32 (then a 32-code chunk never straddles a block, even where
//     blocks straddle rows); otherwise the launcher takes the fallback.
//   factored: the same with the block / channel scale pulled out of each
//     chunk's partial sum (one multiply per chunk instead of per weight): not
//     the exact w', same function within fp32 rounding.
//   fallback: one warp per row, one element per lane per step; any shape,
//     block size and alignment.
//   gpt2q fp16: the same vec kernel on a dense fp16 weight, the baseline.
// Rows beyond 8 run in tiles of 8 (one launch each).
#include "quant_common.cuh"

using qdev::DT;

using Kind = qdev::QKind;
enum class Epi { none, gelu, accumulate };
enum class Cfg { autoc, r1u1, r1u4, r4u1, fallback };
const char* cfg_name(Cfg c) {
  const char* n[] = {"auto", "r1u1", "r1u4", "r4u1", "fallback"};
  return n[static_cast<int>(c)];
}

// Everything a launch needs (kernel parameter, by value). Device pointers.
struct Params {
  const uint8_t* codes;  // q4: packed nibbles; i8: int8 [out, in]; f16: __half [out, in]
  const float* absmax;   // q4 plain absmax [blocks] (null when dq_q is set)
  const uint8_t* dq_q;   // q4 double quant: codes [blocks], state2, map [256], offset
  const float* dq_state2;
  const float* dq_map;
  float dq_offset;
  int dq_blocksize;
  int blocksize, blocksize_log2;  // q4
  float table[16];                // q4 code table
  const float* scale;             // i8: [1] or [out]
  const int32_t* zero_point;      // i8: [1] or [out], or null (symmetric)
  int per_channel;
  int out, in, rows;  // rows <= 8 per launch
  const void* x;      // [rows, in] of xdt
  const float* bias;  // [out] or null
  void* y;            // [rows, out] of ydt
  DT ydt;
  Epi epi;
};

constexpr int kWarps = 4;  // warps per block: 128 threads

template <Kind K>
constexpr int kEpw = K == Kind::q4 ? 8 : K == Kind::i8 ? 4 : 2;  // elements per 32-bit word

__device__ __forceinline__ float gelu_new(float v) {
  return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

// bias, epilogue and store of one output; y is [rows, out].
__device__ __forceinline__ void finish(const Params& p, int m, int j, float v) {
  if (p.bias) v += __ldg(p.bias + j);
  if (p.epi == Epi::gelu) v = gelu_new(v);
  const size_t i = static_cast<size_t>(m) * p.out + j;
  if (p.epi == Epi::accumulate) static_cast<float*>(p.y)[i] += v;  // the residual add (fp32 y only)
  else qdev::store_dt(p.y, i, p.ydt, v);
}

// The 4-bit table lookup by byte offset (code * 4), saving a shift per code.
__device__ __forceinline__ float tab_at(const float* tab, uint32_t byte_offset) {
  return *reinterpret_cast<const float*>(reinterpret_cast<const char*>(tab) + byte_offset);
}

// Decode one 32-bit word of codes into kEpw<K> values: w' when scale is
// applied (exact: one fp32 multiply), else the unscaled code values.
// q4: byte i holds element 2i in its high nibble and 2i+1 in its low one.
template <Kind K, bool kScale>
__device__ __forceinline__ void decode_word(uint32_t w, float s, float magic, const float* tab,
                                            float (&v)[kEpw<K>]) {
  if constexpr (K == Kind::q4) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = tab_at(tab, (w >> (8 * i + 2)) & 0x3Cu);
      v[2 * i + 1] = tab_at(tab, (i == 0 ? (w << 2) : (w >> (8 * i - 2))) & 0x3Cu);
    }
  } else if constexpr (K == Kind::i8) {
    // q + 128 as the low mantissa bits of 2^23: exactly 2^23 + q + 128, and
    // minus magic = 2^23 + 128 + zp gives float(q - zp) exactly (|zp| <= 2^22).
    const uint32_t u = w ^ 0x80808080u;
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = __fsub_rn(__int_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | i)), magic);
  } else {
    __half2 h;
    memcpy(&h, &w, 4);
    const float2 f = __half22float2(h);
    v[0] = f.x, v[1] = f.y;
  }
  if constexpr (kScale && K != Kind::f16) {
#pragma unroll
    for (int e = 0; e < kEpw<K>; ++e) v[e] = __fmul_rn(v[e], s);  // never fused into the FMA below
  }
}

__device__ __forceinline__ uint32_t word_of(const uint4& q, int w) {
  return w == 0 ? q.x : w == 1 ? q.y : w == 2 ? q.z : q.w;
}

template <Kind K, typename XT, int MT, int R, int U, bool kFactor>
__global__ void __launch_bounds__(kWarps * 32) gemv_vec(const Params p) {
  constexpr int EPW = kEpw<K>, EPC = 4 * EPW;  // elements per word, per 16-byte chunk
  __shared__ float s_tab[16];
  __shared__ float s_map[256];
  if constexpr (K == Kind::q4) {
    if (threadIdx.x < 16) s_tab[threadIdx.x] = p.table[threadIdx.x];
    if (p.dq_q)
      for (int i = threadIdx.x; i < 256; i += blockDim.x) s_map[i] = p.dq_map[i];
    __syncthreads();
  }
  const int lane = threadIdx.x & 31;
  const int j0 = (blockIdx.x * kWarps + static_cast<int>(threadIdx.x >> 5)) * R;
  if (j0 >= p.out) return;  // after the only barrier
  const int C = p.in / EPC;
  const size_t row_bytes = static_cast<size_t>(p.in) * (K == Kind::q4 ? 1 : K == Kind::i8 ? 2 : 4) / 2;
  const XT* x = static_cast<const XT*>(p.x);

  // int8: per-row scale and magic constant (see decode_word).
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
    // Every load of this step first: R x U independent 16-byte loads in flight.
    uint4 q[R][U];
    float sc[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = cb + 32 * u + lane, j = j0 + r;
        q[r][u] = make_uint4(0, 0, 0, 0);  // past the end: zero codes and a zero scale contribute +-0
        sc[r][u] = 0.0f;
        if (c < C && j < p.out) {
          sc[r][u] = rscale[r];
          // Streaming load: the weight is read once per call; keep L1 for x.
          q[r][u] = __ldcs(reinterpret_cast<const uint4*>(p.codes + j * row_bytes + static_cast<size_t>(c) * 16));
          if constexpr (K == Kind::q4) {
            // The chunk's 32 codes share one block (32-aligned start, power-of-two blocksize >= 32).
            // Block indices fit in 32 bits (numel < 2^36): a 32-bit division for the nested block.
            const int b = static_cast<int>((static_cast<int64_t>(j) * p.in + static_cast<int64_t>(c) * EPC) >>
                                           p.blocksize_log2);
            sc[r][u] = p.dq_q ? __fadd_rn(__fmul_rn(s_map[__ldg(p.dq_q + b)], __ldg(p.dq_state2 + b / p.dq_blocksize)),
                                          p.dq_offset)
                              : __ldg(p.absmax + b);
          }
        }
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (cb + 32 * u >= C) break;  // warp-uniform: the rest of this step is empty for every lane
      // Lanes past the row end compute on zero codes with a zero scale (adds
      // +-0) and read x at the last chunk instead: no divergent branch here.
      const int c = min(cb + 32 * u + lane, C - 1);
      float part[R][MT];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) part[r][m] = 0.0f;
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        float wv[R][EPW];
#pragma unroll
        for (int r = 0; r < R; ++r) decode_word<K, !kFactor>(word_of(q[r][u], w), sc[r][u], magic[r], s_tab, wv[r]);
        const int k = c * EPC + w * EPW;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          // Padded rows of the MT tile re-read the last real row; their sums are never stored.
          float xv[EPW];
          qdev::load_x<XT, EPW>(x + static_cast<size_t>(min(m, p.rows - 1)) * p.in + k, xv);
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int e = 0; e < EPW; ++e) {
              if constexpr (kFactor) part[r][m] = fmaf(xv[e], wv[r][e], part[r][m]);
              else acc[r][m] = fmaf(xv[e], wv[r][e], acc[r][m]);
            }
        }
      }
      if constexpr (kFactor) {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int m = 0; m < MT; ++m) acc[r][m] = fmaf(part[r][m], sc[r][u], acc[r][m]);
      }
    }
  }

  constexpr int V = R * MT;
  float v[V];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) v[r * MT + m] = acc[r][m];
  const float total = qdev::warp_reduce_scatter(v);
  constexpr int shift = 5 - (V >= 32 ? 5 : V >= 16 ? 4 : V >= 8 ? 3 : V >= 4 ? 2 : V >= 2 ? 1 : 0);
  if ((lane & ((1 << shift) - 1)) == 0) {
    const int idx = lane >> shift, r = idx / MT, m = idx % MT, j = j0 + r;
    if (j < p.out && m < p.rows) finish(p, m, j, total);
  }
}

// Any shape, block size and alignment: one warp per row, one element per
// lane per step, up to 8 activation rows.
template <Kind K, typename XT>
__global__ void __launch_bounds__(kWarps * 32) gemv_fallback(const Params p) {
  __shared__ float s_map[256];
  if constexpr (K == Kind::q4) {
    if (p.dq_q)
      for (int i = threadIdx.x; i < 256; i += blockDim.x) s_map[i] = p.dq_map[i];
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
      const uint8_t byte = p.codes[e >> 1];
      const int code = (e & 1) ? (byte & 15) : (byte >> 4);
      const int64_t b = e / p.blocksize;
      const float am = p.dq_q ? __fadd_rn(__fmul_rn(s_map[p.dq_q[b]], p.dq_state2[b / p.dq_blocksize]), p.dq_offset)
                              : p.absmax[b];
      w = __fmul_rn(p.table[code], am);
    } else if constexpr (K == Kind::i8) {
      const int g = p.per_channel ? j : 0;
      const int zp = p.zero_point ? p.zero_point[g] : 0;
      w = __fmul_rn(static_cast<float>(static_cast<int>(reinterpret_cast<const int8_t*>(p.codes)[e]) - zp), p.scale[g]);
    } else {
      w = __half2float(reinterpret_cast<const __half*>(p.codes)[e]);
    }
#pragma unroll
    for (int m = 0; m < 8; ++m)
      if (m < p.rows) acc[m] = fmaf(qdev::to_f32(x[static_cast<size_t>(m) * p.in + k]), w, acc[m]);
  }
  const float total = qdev::warp_reduce_scatter(acc);  // lane l: row l >> 2
  if ((lane & 3) == 0 && (lane >> 2) < p.rows) finish(p, lane >> 2, j, total);
}

// ---------------------------------------------------------------- launcher
struct Weight {  // the format-level description, device pointers
  Kind kind;
  Params p;  // weight fields filled; io fields set per call
};

template <Kind K, typename XT, int MT, bool F>
void launch_vec_cfg(Cfg c, const Params& p, cudaStream_t s) {
  auto go = [&](auto kernel, int R) {
    const int warps = (p.out + R - 1) / R;
    kernel<<<(warps + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(p);
  };
  if (c == Cfg::r1u1) go(gemv_vec<K, XT, MT, 1, 1, F>, 1);
  else if (c == Cfg::r1u4) go(gemv_vec<K, XT, MT, 1, 4, F>, 1);
  else go(gemv_vec<K, XT, MT, 4, 1, F>, 4);
}

template <Kind K, typename XT, bool F>
void launch_vec_mt(Cfg c, const Params& p, cudaStream_t s) {
  if (p.rows <= 1) launch_vec_cfg<K, XT, 1, F>(c, p, s);
  else if (p.rows <= 2) launch_vec_cfg<K, XT, 2, F>(c, p, s);
  else if (p.rows <= 4) launch_vec_cfg<K, XT, 4, F>(c, p, s);
  else launch_vec_cfg<K, XT, 8, F>(c, p, s);
}

template <Kind K, typename XT>
void launch_kind(Cfg c, bool factor, const Params& p, cudaStream_t s) {
  if (c == Cfg::fallback) {
    gemv_fallback<K, XT><<<(p.out + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(p);
    return;
  }
  if constexpr (K != Kind::f16 && std::is_same_v<XT, float>) {
    if (factor) return launch_vec_mt<K, XT, true>(c, p, s);
  }
  launch_vec_mt<K, XT, false>(c, p, s);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// y[rows, out] = epi(x[rows, in] . w'^T + bias). Raw device pointers, no
// allocation, no synchronisation: capturable in a CUDA graph. `factor`
// applies to fp32 x and 4-bit / int8 weights only (else ignored).
void quant_gemv(const Weight& w, const void* x, DT xdt, int rows, const float* bias, void* y, DT ydt, Epi epi,
                cudaStream_t s, Cfg cfg = Cfg::autoc, bool factor = false) {
  if (epi == Epi::accumulate && ydt != DT::f32) {
    std::fprintf(stderr, "quant_gemv: accumulate needs an f32 y\n");
    std::exit(2);
  }
  Params p = w.p;
  const int epc = 4 * (w.kind == Kind::q4 ? 8 : w.kind == Kind::i8 ? 4 : 2);
  const bool pow2_bs = p.blocksize >= 32 && (p.blocksize & (p.blocksize - 1)) == 0;
  const bool vec_ok = p.in % epc == 0 && aligned16(p.codes) && aligned16(x) && (w.kind != Kind::q4 || pow2_bs);
  if (!vec_ok) cfg = Cfg::fallback;
  if (cfg == Cfg::autoc) {
    const int chunks = p.in / epc;
    cfg = p.out >= 8192 ? Cfg::r4u1 : chunks > 32 ? Cfg::r1u4 : Cfg::r1u1;
  }
  p.blocksize_log2 = pow2_bs ? __builtin_ctz(static_cast<unsigned>(p.blocksize)) : 0;
  const size_t xsz = qdev::dt_size(xdt), ysz = qdev::dt_size(ydt);
  for (int r0 = 0; r0 < rows; r0 += 8) {
    p.rows = std::min(8, rows - r0);
    p.x = static_cast<const char*>(x) + static_cast<size_t>(r0) * p.in * xsz;
    p.y = static_cast<char*>(y) + static_cast<size_t>(r0) * p.out * ysz;
    p.bias = bias;
    p.ydt = ydt;
    p.epi = epi;
    auto by_x = [&](auto kind_tag) {
      constexpr Kind K = decltype(kind_tag)::value;
      if (xdt == DT::f32) launch_kind<K, float>(cfg, factor, p, s);
      else if (xdt == DT::f16) launch_kind<K, __half>(cfg, factor, p, s);
      else launch_kind<K, __nv_bfloat16>(cfg, factor, p, s);
    };
    if (w.kind == Kind::q4) by_x(std::integral_constant<Kind, Kind::q4>{});
    else if (w.kind == Kind::i8) by_x(std::integral_constant<Kind, Kind::i8>{});
    else if (xdt == DT::f32) launch_kind<Kind::f16, float>(cfg, false, p, s);
    else {
      std::fprintf(stderr, "quant_gemv: the fp16 baseline takes f32 x\n");
      std::exit(2);
    }
    CUDA_LAUNCH_CHECK();
  }
}

// ---------------------------------------------------------------- host side
// The launch descriptor of a test weight (quant_common.cuh) from its device copy.
Weight weight_of(const qdev::HostQuant& h, const qdev::QuantPtrs& d) {
  Weight w{};
  w.kind = h.kind;
  Params& p = w.p;
  p.codes = d.codes, p.absmax = d.absmax, p.dq_q = d.dq_q, p.dq_state2 = d.state2, p.dq_map = d.map;
  p.dq_offset = h.offset, p.dq_blocksize = 256, p.blocksize = h.bs;
  std::memcpy(p.table, h.table(), sizeof p.table);
  p.scale = d.scale, p.zero_point = d.zp, p.per_channel = h.per_channel;
  p.out = static_cast<int>(h.out), p.in = static_cast<int>(h.in);
  return w;
}

// ---------------------------------------------------------------- validation
struct Case {
  const char* fmt;
  int out, in, bs, rows;
  DT xdt, ydt;
  Epi epi;
  bool bias;
  Cfg cfg;
  bool factor;
  bool graph;  // run through graph capture + replay
};

void run_case(qdev::Results& res, const Case& c, uint64_t seed) {
  const qdev::HostQuant h = qdev::make_quant(c.fmt, c.out, c.in, c.bs, seed);
  const qdev::DeviceQuant d(h, 1);
  const size_t nx = static_cast<size_t>(c.rows) * c.in, ny = static_cast<size_t>(c.rows) * c.out;
  std::vector<float> x = dev::random_floats(nx, seed + 1, 1.0f);
  for (auto& v : x) v = qdev::round_to(c.xdt, v);  // the kernel sees x in its own type
  std::vector<float> bias = dev::random_floats(c.out, seed + 2, 0.5f);
  std::vector<float> y0 = dev::random_floats(ny, seed + 3, 1.0f);  // accumulate's initial y
  dev::DeviceBuffer<uint8_t> dx(qdev::to_bytes(c.xdt, x)), dy(ny * qdev::dt_size(c.ydt));
  dev::DeviceBuffer<float> db(bias);
  if (c.epi == Epi::accumulate) dy.upload(qdev::to_bytes(DT::f32, y0));
  else dy.poison();
  const Weight w = weight_of(h, d.at(0));
  auto launch = [&](cudaStream_t s) {
    quant_gemv(w, dx.p, c.xdt, c.rows, c.bias ? db.p : nullptr, dy.p, c.ydt, c.epi, s, c.cfg, c.factor);
  };
  if (c.graph) qdev::run_in_graph(launch);
  else launch(nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = qdev::from_bytes(c.ydt, dy.download());
  // Double-precision reference of the exactly dequantized product.
  std::vector<double> ref(ny), mag(ny);
  for (int m = 0; m < c.rows; ++m)
    for (int j = 0; j < c.out; ++j) {
      const float* xr = x.data() + static_cast<size_t>(m) * c.in;
      const float* wr = h.deq.data() + static_cast<size_t>(j) * c.in;
      double s = 0, a = 0;
      for (int k = 0; k < c.in; ++k) {
        const double t = static_cast<double>(xr[k]) * wr[k];
        s += t, a += std::fabs(t);
      }
      if (c.bias) s += bias[j], a += std::fabs(bias[j]);
      if (c.epi == Epi::gelu) s = 0.5 * s * (1.0 + std::tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)));
      const size_t i = static_cast<size_t>(m) * c.out + j;
      if (c.epi == Epi::accumulate) s += y0[i], a += std::fabs(y0[i]);
      ref[i] = s, mag[i] = a;
    }
  // Relative L2 against the stated tolerance, and every element against
  // 1e-4 of its magnitude scale sum|x.w'| + |bias| (plus the output type's
  // rounding): a wrong index or block scale moves an element by O(scale).
  const double tol = c.ydt == DT::f32 ? 1e-5 : 1e-2;
  const double u_out = c.ydt == DT::f32 ? 0x1p-22 : c.ydt == DT::f16 ? 0x1p-10 : 0x1p-7;
  const double l2 = dev::rel_l2(got.data(), ref.data(), ny);
  size_t bad = 0;
  char first[128] = "";
  for (size_t i = 0; i < ny; ++i) {
    const double lim = 1e-4 * mag[i] + u_out * std::fabs(ref[i]) + 1e-30;
    if (!(std::fabs(got[i] - ref[i]) <= lim) && bad++ == 0)
      std::snprintf(first, sizeof first, " (first: y[%zu] = %.7g, want %.7g)", i, got[i], ref[i]);
  }
  res.record(l2 <= tol && bad == 0,
             "gemv %-16s [%5d,%4d] bs %4d rows %d x %-4s y %-4s %-10s bias %d %-8s%s%s: rel_l2 %.2e (tol %.0e), "
             "%zu elements out of bound%s",
             c.fmt, c.out, c.in, c.bs, c.rows, qdev::dt_name(c.xdt), qdev::dt_name(c.ydt),
             c.epi == Epi::none ? "none" : c.epi == Epi::gelu ? "gelu" : "accumulate", c.bias, cfg_name(c.cfg),
             c.factor ? " factored" : "", c.graph ? " graph" : "", l2, tol, bad, first);
}

// small: --validate-only, which run_all.sh runs under memcheck and racecheck:
// only the cases of at most 600k weights (every path and format is among them).
std::vector<Case> validation_cases(bool small) {
  const DT F = DT::f32, H = DT::f16, B = DT::bf16;
  std::vector<Case> v;
  const char* all[] = {"nf4",          "fp4",          "nf4-dq",          "fp4-dq",          "int8-tensor",
                       "int8-channel", "int8-tensor-sym", "int8-channel-sym", "fp16"};
  for (const char* f : all) {  // every format on GPT-2 shapes and on blocks straddling rows (in 96, bs 64)
    v.push_back({f, 768, 768, 64, 1, F, F, Epi::none, true, Cfg::autoc, false, false});
    v.push_back({f, 768, 3072, 64, 8, F, F, Epi::none, true, Cfg::autoc, false, false});
    v.push_back({f, 100, 96, 64, 3, F, F, Epi::none, true, Cfg::autoc, false, false});
  }
  for (const char* f : {"nf4", "nf4-dq", "int8-channel", "fp16"})  // every config; out % 4 != 0, 4608 > 128 chunks
    for (Cfg c : {Cfg::r1u1, Cfg::r1u4, Cfg::r4u1, Cfg::fallback})
      v.push_back({f, 130, 4608, 128, 5, F, F, Epi::none, true, c, false, false});
  for (int bs : {32, 128, 256, 1024, 4096}) v.push_back({"nf4", 64, 768, bs, 2, F, F, Epi::none, false, Cfg::autoc, false, false});
  v.push_back({"fp4-dq", 300, 768, 32, 2, F, F, Epi::none, true, Cfg::autoc, false, false});  // nested blocks across rows
  // activation / output types and epilogues
  v.push_back({"nf4", 2304, 768, 64, 2, H, B, Epi::gelu, true, Cfg::autoc, false, false});
  v.push_back({"fp4", 768, 768, 64, 7, B, H, Epi::gelu, false, Cfg::autoc, false, false});
  v.push_back({"nf4-dq", 3072, 768, 64, 4, F, F, Epi::accumulate, true, Cfg::autoc, false, false});
  v.push_back({"int8-tensor", 3072, 768, 64, 1, B, H, Epi::none, true, Cfg::autoc, false, false});
  v.push_back({"int8-channel", 768, 3072, 64, 8, H, F, Epi::accumulate, false, Cfg::autoc, false, false});
  v.push_back({"int8-channel-sym", 768, 768, 64, 3, F, B, Epi::gelu, true, Cfg::autoc, false, false});
  v.push_back({"fp16", 768, 768, 64, 2, F, H, Epi::gelu, true, Cfg::autoc, false, false});
  v.push_back({"fp16", 768, 768, 64, 1, F, F, Epi::accumulate, true, Cfg::autoc, false, false});
  v.push_back({"nf4", 130, 4608, 64, 6, B, F, Epi::none, true, Cfg::r4u1, false, false});
  // the factored candidate
  for (const char* f : {"nf4", "nf4-dq", "int8-channel", "int8-tensor-sym"})
    for (int rows : {1, 8}) v.push_back({f, 768, 768, 64, rows, F, F, Epi::none, true, Cfg::autoc, true, false});
  v.push_back({"nf4", 2304, 768, 64, 8, F, F, Epi::none, true, Cfg::autoc, true, false});
  v.push_back({"nf4", 130, 4608, 64, 3, F, F, Epi::gelu, true, Cfg::r1u4, true, false});
  v.push_back({"int8-channel", 130, 4608, 64, 8, F, F, Epi::none, true, Cfg::r4u1, true, false});
  // shapes only the fallback takes: in % chunk != 0, odd element counts, a non-power-of-two block
  v.push_back({"nf4", 33, 101, 64, 3, F, F, Epi::none, true, Cfg::autoc, false, false});
  v.push_back({"fp4-dq", 7, 77, 32, 9, F, F, Epi::none, true, Cfg::autoc, false, false});
  v.push_back({"int8-channel", 9, 33, 64, 2, H, F, Epi::gelu, true, Cfg::autoc, false, false});
  v.push_back({"int8-tensor", 5, 40, 64, 1, F, F, Epi::none, false, Cfg::autoc, false, false});
  v.push_back({"fp16", 5, 13, 64, 9, F, F, Epi::none, true, Cfg::autoc, false, false});
  v.push_back({"nf4", 40, 96, 48, 2, F, F, Epi::none, true, Cfg::autoc, false, false});
  // more than 8 rows: tiles of 8
  v.push_back({"nf4", 768, 768, 64, 13, F, F, Epi::none, true, Cfg::autoc, false, false});
  v.push_back({"int8-channel", 768, 768, 64, 16, F, H, Epi::none, true, Cfg::autoc, false, false});
  // the LM head (r4u1 by the auto rule)
  v.push_back({"nf4", 50257, 768, 64, 1, F, F, Epi::none, false, Cfg::autoc, false, false});
  v.push_back({"nf4", 50257, 768, 64, 8, F, F, Epi::none, false, Cfg::autoc, false, false});
  v.push_back({"int8-channel", 50257, 768, 64, 1, F, F, Epi::none, false, Cfg::autoc, false, false});
  v.push_back({"fp16", 50257, 768, 64, 1, F, F, Epi::none, false, Cfg::autoc, false, false});
  // from a CUDA graph
  v.push_back({"nf4", 768, 768, 64, 1, F, F, Epi::none, true, Cfg::autoc, false, true});
  v.push_back({"int8-channel", 130, 4608, 64, 8, F, F, Epi::accumulate, true, Cfg::autoc, false, true});
  if (small)
    v.erase(std::remove_if(v.begin(), v.end(), [](const Case& c) { return int64_t{c.out} * c.in > 600000; }), v.end());
  return v;
}

// ---------------------------------------------------------------- benchmark
void benchmark() {
  struct Shape {
    int out, in;
    const char* what;
  };
  const Shape shapes[] = {{2304, 768, "c_attn"},
                          {768, 768, "attn c_proj"},
                          {3072, 768, "c_fc"},
                          {768, 3072, "mlp c_proj"},
                          {50257, 768, "lm_head"}};
  struct Row {
    std::string label;
    float us[4];
  };
  std::vector<Row> table;
  const char* fmts[] = {"fp16", "nf4", "nf4-dq", "int8-channel"};
  for (const Shape& sh : shapes)
    for (int rows : {1, 8}) {
      Row row{std::string(sh.what) + " [" + std::to_string(sh.out) + "," + std::to_string(sh.in) + "] M=" +
                  std::to_string(rows),
              {}};
      dev::DeviceBuffer<float> x(dev::random_floats(static_cast<size_t>(rows) * sh.in, 7, 1.0f));
      dev::DeviceBuffer<float> bias(dev::random_floats(sh.out, 8, 0.1f)), y(static_cast<size_t>(rows) * sh.out);
      for (int f = 0; f < 4; ++f) {
        const qdev::HostQuant h = qdev::make_quant(fmts[f], sh.out, sh.in, 64, 100 + f);
        const int copies = qdev::rotation_copies(h.bytes());
        const qdev::DeviceQuant d(h, copies);
        const double bytes = h.bytes() + 4.0 * rows * (sh.in + sh.out) + 4.0 * sh.out;
        const double flops = 2.0 * rows * sh.out * sh.in;
        std::vector<std::pair<Cfg, bool>> variants = {{Cfg::autoc, false}};
        if (f != 0) variants.insert(variants.end(), {{Cfg::r1u1, false}, {Cfg::r1u4, false}, {Cfg::r4u1, false},
                                                     {Cfg::autoc, true}, {Cfg::fallback, false}});
        for (const auto& variant : variants) {
          const Cfg cfg = variant.first;
          const bool factor = variant.second;
          const float us = qdev::graph_time_us(copies, [&](cudaStream_t s, int i) {
            quant_gemv(weight_of(h, d.at(i)), x.p, DT::f32, rows, bias.p, y.p, DT::f32, Epi::none, s, cfg, factor);
          });
          char name[96];
          std::snprintf(name, sizeof name, "gemv %s %s%s [%d,%d] M=%d", fmts[f], cfg_name(cfg), factor ? "+factored" : "",
                        sh.out, sh.in, rows);
          qdev::bench_line(name, us, bytes, flops);
          if (cfg == Cfg::autoc && !factor) row.us[f] = us;
        }
      }
      table.push_back(row);
    }
  std::printf("\nsummary (us per call, auto config, fp32 x/y, bias, weights cold in L2; 'gpt2q fp16' = dense fp16 GEMV):\n");
  std::printf("%-32s %10s %10s %10s %10s %9s %9s\n", "shape", "fp16", "nf4", "nf4-dq", "int8-ch", "nf4/fp16",
              "int8/fp16");
  for (const Row& r : table)
    std::printf("%-32s %10.2f %10.2f %10.2f %10.2f %9.2f %9.2f\n", r.label.c_str(), r.us[0], r.us[1], r.us[2], r.us[3],
                r.us[1] / r.us[0], r.us[3] / r.us[0]);
}

int main(int argc, char** argv) {
  const bool validate_only = qdev::has_flag(argc, argv, "--validate-only");
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("quant_gemv on %s (%d SMs, L2 %d MB)\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  qdev::Results res;
  uint64_t seed = 1000;
  for (const Case& c : validation_cases(validate_only)) run_case(res, c, seed += 17);
  if (!validate_only && res.fail == 0) benchmark();
  return res.finish();
}
