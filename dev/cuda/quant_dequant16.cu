// Dequantize a whole weight into a 16-bit (or fp32) scratch for cuBLASLt
// (prompts and batches): NF4/FP4 (+- double quant) and int8 affine /
// symmetric -> W'[out, in] as fp16, bf16 or fp32. Every value is computed in
// fp32 exactly as the format defines it (table[code] * absmax; the nested
// absmax map[q] * state2 + offset as a product then a sum; float(q - zp) *
// scale) and rounded once to the output type, as bitsandbytes' dequantize
// to half does. The fp32 operations are written with __fmul_rn / __fadd_rn,
// which nvcc never contracts into an FMA, so this file is bit-exact under
// the default -fmad=true (no -fmad=false needed); denormals are kept (no
// -ftz). Validated bit for bit against the CPU reference.
//
// Candidates (--validate-only skips the benchmark):
//   scalar:    one thread per code byte, grid-stride, block looked up per
//              value (the product's kernel): any block size, any alignment.
//   vec16:     one thread per 16 code bytes (32 values, one absmax): a
//              16-byte load, 4 (16-bit) or 8 (fp32) 16-byte stores of its
//              own 64/128 contiguous bytes (a warp's stores are strided).
//   coalesced: one thread per 4 code bytes (8 values) -> one 16-byte store
//              (two for fp32), 4 units per thread: a warp's loads and stores
//              are both contiguous.
//   int8 vec:  one thread per 8 codes (8-byte load) -> 8 values, 4 units per
//              thread; per-channel needs in % 8 == 0 (a unit in one row).
// The vector kernels need a power-of-two block size (>= 32 for vec16, >= 8
// for coalesced) and aligned pointers; the launcher falls back to scalar
// otherwise. The last n % 8 (or % 32) values are done one by one by the last
// block. Blocks straddling rows (in % blocksize != 0) need nothing special:
// the 4-bit formats are defined on the flattened weight.
#include "quant_common.cuh"

using qdev::DT;

enum class DqKernel { autok, scalar, vec16, coalesced };
const char* kernel_name(DqKernel k) {
  const char* n[] = {"auto", "scalar", "vec16", "coalesced"};
  return n[static_cast<int>(k)];
}

struct Q4 {  // device pointers
  const uint8_t* packed;
  const float* absmax;  // null when double-quantized
  const uint8_t* dq_q;
  const float* dq_state2;
  const float* dq_map;
  float dq_offset;
  int dq_blocksize;
  int64_t n;
  int blocksize, blocksize_log2;
  float table[16];
};
struct Q8 {
  const int8_t* q;
  const float* scale;
  const int32_t* zero_point;  // null: symmetric
  int per_channel;
  int64_t out, in;
};

constexpr int kThreads = 256, kUnits = 4;

using qdev::from_f32;
// 8 consecutive values, 16-byte aligned: one 16-byte store (two for fp32).
template <typename OT>
__device__ __forceinline__ void store8(OT* dst, const float (&v)[8]) {
  if constexpr (std::is_same_v<OT, float>) {
    reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // The pair's first value in the low half: memory order.
      const OT lo = from_f32<OT>(v[2 * i]), hi = from_f32<OT>(v[2 * i + 1]);
      uint16_t a, b;
      memcpy(&a, &lo, 2);
      memcpy(&b, &hi, 2);
      w[i] = static_cast<uint32_t>(a) | (static_cast<uint32_t>(b) << 16);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

__device__ __forceinline__ void load_tables(const Q4& p, float* s_tab, float* s_map) {
  if (threadIdx.x < 16) s_tab[threadIdx.x] = p.table[threadIdx.x];
  if (p.dq_q)
    for (int i = threadIdx.x; i < 256; i += blockDim.x) s_map[i] = p.dq_map[i];
  __syncthreads();
}
// Block b's absmax: stored, or decoded from the nested codes (product, then sum).
__device__ __forceinline__ float block_absmax(const Q4& p, const float* s_map, int64_t b) {
  // Block counts stay below 2^32: a 32-bit division for the nested block (64-bit is a slow subroutine).
  return p.dq_q ? __fadd_rn(__fmul_rn(s_map[p.dq_q[b]],
                                      p.dq_state2[static_cast<uint32_t>(b) / static_cast<uint32_t>(p.dq_blocksize)]),
                            p.dq_offset)
                : __ldg(p.absmax + b);
}
// One value by its flat index, any block size (the tails and the scalar kernel).
__device__ __forceinline__ float q4_value(const Q4& p, const float* s_tab, const float* s_map, int64_t e) {
  const uint8_t byte = p.packed[e >> 1];
  return __fmul_rn(s_tab[(e & 1) ? (byte & 15) : (byte >> 4)], block_absmax(p, s_map, e / p.blocksize));
}
// 8 values from 4 code bytes: byte i holds value 2i (high nibble), 2i+1 (low).
__device__ __forceinline__ void decode8(uint32_t w, float am, const float* s_tab, float (&v)[8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __fmul_rn(s_tab[(w >> (8 * i + 4)) & 15], am);
    v[2 * i + 1] = __fmul_rn(s_tab[(w >> (8 * i)) & 15], am);
  }
}

template <typename OT>
__global__ void dq4_scalar(const __grid_constant__ Q4 p, OT* out) {
  __shared__ float s_tab[16], s_map[256];
  load_tables(p, s_tab, s_map);
  const int64_t bytes = (p.n + 1) / 2;
  for (int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; j < bytes; j += int64_t{gridDim.x} * blockDim.x) {
    out[2 * j] = from_f32<OT>(q4_value(p, s_tab, s_map, 2 * j));
    if (2 * j + 1 < p.n) out[2 * j + 1] = from_f32<OT>(q4_value(p, s_tab, s_map, 2 * j + 1));
  }
}

template <typename OT>
__global__ void __launch_bounds__(kThreads) dq4_vec16(const __grid_constant__ Q4 p, OT* out) {
  __shared__ float s_tab[16], s_map[256];
  load_tables(p, s_tab, s_map);
  const int64_t chunks = p.n / 32, c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c < chunks) {
    const uint4 q = __ldcs(reinterpret_cast<const uint4*>(p.packed) + c);
    const float am = block_absmax(p, s_map, (c * 32) >> p.blocksize_log2);  // blocksize >= 32: one block
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float v[8];
      decode8(w[i], am, s_tab, v);
      store8(out + c * 32 + 8 * i, v);
    }
  }
  const int64_t tail = p.n - chunks * 32;  // < 32 values: the last block, one each
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x < tail) {
    const int64_t e = chunks * 32 + threadIdx.x;
    out[e] = from_f32<OT>(q4_value(p, s_tab, s_map, e));
  }
}

template <typename OT>
__global__ void __launch_bounds__(kThreads) dq4_coalesced(const __grid_constant__ Q4 p, OT* out) {
  __shared__ float s_tab[16], s_map[256];
  load_tables(p, s_tab, s_map);
  const int64_t units = p.n / 8, first = int64_t{blockIdx.x} * kThreads * kUnits + threadIdx.x;
  uint32_t w[kUnits];
  float am[kUnits];
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {  // all loads first
    const int64_t i = first + u * kThreads;
    w[u] = 0, am[u] = 0.0f;
    if (i < units) {
      w[u] = __ldcs(reinterpret_cast<const unsigned int*>(p.packed) + i);
      am[u] = block_absmax(p, s_map, (i * 8) >> p.blocksize_log2);  // blocksize >= 8: one block
    }
  }
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const int64_t i = first + u * kThreads;
    if (i < units) {
      float v[8];
      decode8(w[u], am[u], s_tab, v);
      store8(out + i * 8, v);
    }
  }
  const int64_t tail = p.n - units * 8;
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x < tail) {
    const int64_t e = units * 8 + threadIdx.x;
    out[e] = from_f32<OT>(q4_value(p, s_tab, s_map, e));
  }
}

__device__ __forceinline__ float q8_value(const Q8& p, int64_t e, int64_t row) {
  const int64_t g = p.per_channel ? row : 0;
  const int32_t zp = p.zero_point ? p.zero_point[g] : 0;
  // q - zp is an exact int32; the conversion rounds to nearest as the host's static_cast does.
  return __fmul_rn(__int2float_rn(static_cast<int32_t>(p.q[e]) - zp), p.scale[g]);
}

template <typename OT>
__global__ void dq8_scalar(const Q8 p, OT* out) {
  const int64_t n = p.out * p.in;
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x)
    out[e] = from_f32<OT>(q8_value(p, e, e / p.in));
}

template <typename OT>
__global__ void __launch_bounds__(kThreads) dq8_vec(const Q8 p, OT* out) {
  const int64_t n = p.out * p.in, units = n / 8, first = int64_t{blockIdx.x} * kThreads * kUnits + threadIdx.x;
  const bool small = n <= 0xffffffffLL;  // 32-bit division of the row index when it fits
  uint2 w[kUnits];
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const int64_t i = first + u * kThreads;
    w[u] = i < units ? __ldcs(reinterpret_cast<const uint2*>(p.q) + i) : make_uint2(0, 0);
  }
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const int64_t i = first + u * kThreads;
    if (i >= units) continue;
    int64_t row = 0;
    if (p.per_channel)  // the unit lies in one row (in % 8 == 0)
      row = small ? static_cast<int64_t>(static_cast<uint32_t>(i * 8) / static_cast<uint32_t>(p.in)) : i * 8 / p.in;
    const int32_t zp = p.zero_point ? p.zero_point[row] : 0;
    const float s = p.scale[row];
    float v[8];
#pragma unroll
    for (int b = 0; b < 8; ++b) {
      const int32_t q = static_cast<int8_t>(((b < 4 ? w[u].x : w[u].y) >> (8 * (b & 3))) & 0xff);
      v[b] = __fmul_rn(__int2float_rn(q - zp), s);
    }
    store8(out + i * 8, v);
  }
  const int64_t tail = n - units * 8;
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x < tail) {
    const int64_t e = units * 8 + threadIdx.x;
    out[e] = from_f32<OT>(q8_value(p, e, e / p.in));
  }
}

// ---------------------------------------------------------------- launchers
bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }
unsigned grid_for(int64_t items, int64_t per_block) {
  return static_cast<unsigned>(std::max<int64_t>(1, (items + per_block - 1) / per_block));
}

template <typename OT>
void dequant4_t(Q4 p, OT* out, cudaStream_t s, DqKernel k) {
  const bool pow2 = p.blocksize > 0 && (p.blocksize & (p.blocksize - 1)) == 0;
  p.blocksize_log2 = pow2 ? __builtin_ctz(static_cast<unsigned>(p.blocksize)) : 0;
  const bool vec16_ok = pow2 && p.blocksize >= 32 && aligned(p.packed, 16) && aligned(out, 16);
  const bool coal_ok = pow2 && p.blocksize >= 8 && aligned(p.packed, 4) && aligned(out, 16);
  if (k == DqKernel::autok) k = coal_ok ? DqKernel::coalesced : DqKernel::scalar;
  if ((k == DqKernel::vec16 && !vec16_ok) || (k == DqKernel::coalesced && !coal_ok)) k = DqKernel::scalar;
  if (k == DqKernel::vec16) dq4_vec16<OT><<<grid_for(p.n / 32, kThreads), kThreads, 0, s>>>(p, out);
  else if (k == DqKernel::coalesced)
    dq4_coalesced<OT><<<grid_for(p.n / 8, kThreads * kUnits), kThreads, 0, s>>>(p, out);
  else dq4_scalar<OT><<<std::min<unsigned>(grid_for((p.n + 1) / 2, kThreads), 65536), kThreads, 0, s>>>(p, out);
  CUDA_LAUNCH_CHECK();
}
// W'[out, in] (n values of the flattened weight) into `out` of type odt.
// Raw device pointers, no allocation, no synchronisation (graph-capturable).
void dequant4(const Q4& p, void* out, DT odt, cudaStream_t s, DqKernel k = DqKernel::autok) {
  if (p.n <= 0) return;
  if (odt == DT::f32) dequant4_t(p, static_cast<float*>(out), s, k);
  else if (odt == DT::f16) dequant4_t(p, static_cast<__half*>(out), s, k);
  else dequant4_t(p, static_cast<__nv_bfloat16*>(out), s, k);
}

template <typename OT>
void dequant8_t(const Q8& p, OT* out, cudaStream_t s, DqKernel k) {
  const int64_t n = p.out * p.in;
  const bool vec_ok = aligned(p.q, 8) && aligned(out, 16) && (!p.per_channel || p.in % 8 == 0);
  if (k != DqKernel::scalar && vec_ok) dq8_vec<OT><<<grid_for(n / 8, kThreads * kUnits), kThreads, 0, s>>>(p, out);
  else dq8_scalar<OT><<<std::min<unsigned>(grid_for(n, kThreads), 65536), kThreads, 0, s>>>(p, out);
  CUDA_LAUNCH_CHECK();
}
void dequant8(const Q8& p, void* out, DT odt, cudaStream_t s, DqKernel k = DqKernel::autok) {
  if (p.out <= 0 || p.in <= 0) return;
  if (odt == DT::f32) dequant8_t(p, static_cast<float*>(out), s, k);
  else if (odt == DT::f16) dequant8_t(p, static_cast<__half*>(out), s, k);
  else dequant8_t(p, static_cast<__nv_bfloat16*>(out), s, k);
}

// ---------------------------------------------------------------- host side
using qdev::HostQuant;
// Test weights with tiny blocks (denormal / fp16-subnormal outputs): quant_common.cuh.
HostQuant make_q(const std::string& fmt, int64_t out, int64_t in, int bs, uint64_t seed) {
  return qdev::make_quant(fmt, out, in, bs, seed, /*tiny_blocks=*/true);
}
void launch(const HostQuant& h, const qdev::DeviceQuant& d, int i, void* out, DT odt, cudaStream_t s, DqKernel k) {
  const qdev::QuantPtrs q = d.at(i);
  if (h.kind == qdev::QKind::q4) {
    Q4 p{};
    p.packed = q.codes, p.absmax = q.absmax, p.dq_q = q.dq_q, p.dq_state2 = q.state2, p.dq_map = q.map;
    p.dq_offset = h.offset, p.dq_blocksize = 256, p.n = h.out * h.in, p.blocksize = h.bs;
    std::memcpy(p.table, h.table(), sizeof p.table);
    dequant4(p, out, odt, s, k);
  } else {
    dequant8(Q8{reinterpret_cast<const int8_t*>(q.codes), q.scale, q.zp, h.per_channel, h.out, h.in}, out, odt, s, k);
  }
}

// Bit-compares one dequantization; returns the number of differing values
// (and describes the first in `first`). out_offset (in elements) misaligns
// the output to exercise the launcher's fallback.
size_t check_one(const HostQuant& h, DT odt, DqKernel k, int out_offset, bool graph, char* first, size_t first_len) {
  const qdev::DeviceQuant d(h, 1);
  const size_t n = h.deq.size(), esz = qdev::dt_size(odt);
  dev::DeviceBuffer<uint8_t> y((n + out_offset) * esz);
  y.poison();
  void* out = y.p + out_offset * esz;
  if (graph) qdev::run_in_graph([&](cudaStream_t s) { launch(h, d, 0, out, odt, s, k); });
  else launch(h, d, 0, out, odt, nullptr, k);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint8_t> got = y.download();
  const std::vector<uint8_t> want = qdev::to_bytes(odt, h.deq);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(got.data() + (i + out_offset) * esz, want.data() + i * esz, esz) != 0 && bad++ == 0) {
      float g;
      if (odt == DT::f32) std::memcpy(&g, got.data() + (i + out_offset) * esz, 4);
      else g = qdev::from_bytes(odt, std::vector<uint8_t>(got.begin() + (i + out_offset) * esz,
                                                          got.begin() + (i + out_offset + 1) * esz))[0];
      std::snprintf(first, first_len, " (first: [%zu] = %.9g, want %.9g)", i, g, qdev::round_to(odt, h.deq[i]));
    }
  return bad;
}

struct Shape {
  int64_t out, in;
  int bs;
};

// small (--validate-only, run under the sanitizers): without the two largest shapes.
void validate(qdev::Results& res, bool small) {
  uint64_t seed = 500;
  std::vector<Shape> q4_shapes = {{100, 96, 64}, {33, 101, 32}, {7, 5, 4096},   {3, 3, 64},
                                  {300, 768, 128}, {64, 80, 16}, {40, 96, 48}};
  std::vector<Shape> q8_shapes = {{100, 96, 0}, {9, 33, 0}, {3, 3, 0}, {300, 768, 0}};
  if (!small) {
    q4_shapes.insert(q4_shapes.end(), {{768, 768, 64}, {2304, 768, 4096}});
    q8_shapes.insert(q8_shapes.end(), {{768, 768, 0}, {2304, 768, 0}});
  }
  for (const char* fmt : {"nf4", "fp4", "nf4-dq", "fp4-dq"})
    for (DT odt : {DT::f16, DT::bf16, DT::f32})
      for (DqKernel k : {DqKernel::scalar, DqKernel::vec16, DqKernel::coalesced, DqKernel::autok}) {
        size_t bad = 0, values = 0;
        char first[160] = "";
        for (const Shape& s : q4_shapes) {
          const HostQuant h = make_q(fmt, s.out, s.in, s.bs, seed += 3);
          bad += check_one(h, odt, k, 0, false, first, sizeof first);
          values += h.deq.size();
        }
        res.record(bad == 0, "dequant %-6s -> %-4s %-9s: %zu shapes (blocksizes 16..4096, odd counts), %zu values, "
                             "%zu differ%s",
                   fmt, qdev::dt_name(odt), kernel_name(k), q4_shapes.size(), values, bad, first);
      }
  for (const char* fmt : {"int8-tensor", "int8-channel", "int8-tensor-sym", "int8-channel-sym"})
    for (DT odt : {DT::f16, DT::bf16, DT::f32})
      for (DqKernel k : {DqKernel::scalar, DqKernel::autok}) {
        size_t bad = 0, values = 0;
        char first[160] = "";
        for (const Shape& s : q8_shapes) {
          const HostQuant h = make_q(fmt, s.out, s.in, 0, seed += 3);
          bad += check_one(h, odt, k, 0, false, first, sizeof first);
          values += h.deq.size();
        }
        res.record(bad == 0, "dequant %-16s -> %-4s %-6s: %zu shapes, %zu values, %zu differ%s", fmt,
                   qdev::dt_name(odt), k == DqKernel::scalar ? "scalar" : "vec", q8_shapes.size(), values, bad, first);
      }
  // A misaligned output (the launcher must fall back), and launches from a CUDA graph.
  for (DT odt : {DT::f16, DT::f32}) {
    char first[160] = "";
    const HostQuant h = make_q("nf4", 100, 96, 64, seed += 3);
    const size_t bad = check_one(h, odt, DqKernel::coalesced, 1, false, first, sizeof first);
    res.record(bad == 0, "dequant nf4 -> %s into an output misaligned by one value: %zu differ%s", qdev::dt_name(odt),
               bad, first);
    const HostQuant g = make_q("int8-channel", 100, 96, 0, seed += 3);
    const size_t bad8 = check_one(g, odt, DqKernel::autok, 1, false, first, sizeof first);
    res.record(bad8 == 0, "dequant int8-channel -> %s misaligned by one value: %zu differ%s", qdev::dt_name(odt), bad8,
               first);
  }
  for (const char* fmt : {"nf4-dq", "int8-channel"}) {
    char first[160] = "";
    const HostQuant h = make_q(fmt, 300, 768, 64, seed += 3);
    const size_t bad = check_one(h, DT::f16, DqKernel::autok, 0, true, first, sizeof first);
    res.record(bad == 0, "dequant %s -> f16 from a CUDA graph: %zu differ%s", fmt, bad, first);
  }
}

void benchmark() {
  const Shape shapes[] = {{2304, 768, 64}, {768, 768, 64}, {3072, 768, 64}, {768, 3072, 64}, {50257, 768, 64}};
  struct Variant {
    const char* fmt;
    DT odt;
    DqKernel k;
  };
  const Variant variants[] = {{"nf4", DT::f16, DqKernel::scalar},        {"nf4", DT::f16, DqKernel::vec16},
                              {"nf4", DT::f16, DqKernel::coalesced},     {"nf4", DT::bf16, DqKernel::coalesced},
                              {"nf4", DT::f32, DqKernel::vec16},         {"nf4", DT::f32, DqKernel::coalesced},
                              {"nf4-dq", DT::f16, DqKernel::vec16},      {"nf4-dq", DT::f16, DqKernel::coalesced},
                              {"int8-channel", DT::f16, DqKernel::scalar}, {"int8-channel", DT::f16, DqKernel::autok}};
  for (const Shape& s : shapes)
    for (const Variant& v : variants) {
      const HostQuant h = make_q(v.fmt, s.out, s.in, s.bs, 9);
      const size_t out_bytes = h.deq.size() * qdev::dt_size(v.odt);
      const int copies = qdev::rotation_copies(h.bytes() + out_bytes);
      const qdev::DeviceQuant d(h, copies);
      const qdev::Rotated y(nullptr, out_bytes, copies);
      const float us = qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
        launch(h, d, i, y.at<uint8_t>(i), v.odt, st, v.k);
      });
      char name[96];
      std::snprintf(name, sizeof name, "dequant %s->%s %s [%lld,%lld]", v.fmt, qdev::dt_name(v.odt),
                    h.kind == qdev::QKind::q4 ? kernel_name(v.k) : (v.k == DqKernel::scalar ? "scalar" : "vec"),
                    static_cast<long long>(s.out), static_cast<long long>(s.in));
      qdev::bench_line(name, us, static_cast<double>(h.bytes() + out_bytes), 0.0);
    }
}

int main(int argc, char** argv) {
  const bool validate_only = qdev::has_flag(argc, argv, "--validate-only");
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("quant_dequant16 on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  qdev::Results res;
  validate(res, validate_only);
  if (!validate_only && res.fail == 0) benchmark();
  return res.finish();
}
