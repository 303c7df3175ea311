// Helpers shared by the quantized-weight and LayerNorm harnesses
// (quant_gemv.cu, quant_dequant16.cu, layernorm16.cu, llm_int8.cu) on top of
// common.cuh: the code tables, 16-bit types, PASS/FAIL bookkeeping, timing
// through CUDA-graph replay over rotating copies of the inputs, and the
// warp reduce-scatter used by the GEMV.
#pragma once
#include <cstdarg>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>

#include "common.cuh"

namespace qdev {

constexpr unsigned kFull = 0xffffffffu;

// ---------------------------------------------------------------- tables
// bitsandbytes' NF4 / FP4 dequantization tables by code (the fp32 literals of
// src/quant/blockwise4.cpp; FP4 code 8 is -0.0).
inline const float kNf4Table[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
inline const float kFp4Table[16] = {
    0.0f, 0.005208333333f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f,
    -0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f};

// A stand-in for bnb's signed dynamic map (the harness only needs 256 sorted
// values in [-1, 1]; the kernels take the map as data): -1, 0 and 1 exactly,
// the rest random.
inline std::vector<float> dynamic_map_table(uint64_t seed) {
  std::vector<float> m = dev::random_floats(256, seed, 1.0f);
  m[0] = -1.0f;
  m[1] = 0.0f;
  m[2] = 1.0f;
  std::sort(m.begin(), m.end());
  return m;
}

// The double-quantized absmax exactly as double_quant.cpp defines it: an fp32
// product, rounded, then an fp32 add (volatile keeps the host compiler from
// contracting the two into an FMA).
inline float host_nested_absmax(const std::vector<float>& map, const std::vector<uint8_t>& q,
                                const std::vector<float>& state2, float offset, int64_t b, int64_t nested_bs) {
  volatile float p = map[q[b]] * state2[b / nested_bs];
  return p + offset;
}

// ---------------------------------------------------------------- 16-bit types
enum class DT { f32, f16, bf16 };
inline const char* dt_name(DT t) { return t == DT::f32 ? "f32" : t == DT::f16 ? "f16" : "bf16"; }
inline size_t dt_size(DT t) { return t == DT::f32 ? 4 : 2; }

// Round an fp32 value to the type (host; round to nearest even) and back.
inline float round_to(DT t, float v) {
  return t == DT::f32 ? v : t == DT::f16 ? dev::f16_round(v) : dev::bf16_round(v);
}
inline uint16_t bits16(DT t, float v) {
  if (t == DT::f16) return static_cast<__half_raw>(__float2half_rn(v)).x;
  return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(v)).x;
}
inline float from_bits16(DT t, uint16_t b) {
  if (t == DT::f16) {
    __half_raw r;
    r.x = b;
    return __half2float(__half(r));
  }
  __nv_bfloat16_raw r;
  r.x = b;
  return __bfloat162float(__nv_bfloat16(r));
}
// Host values -> the bytes of a device array of type t.
inline std::vector<uint8_t> to_bytes(DT t, const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * dt_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DT::f32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t b = bits16(t, v[i]);
      std::memcpy(out.data() + 2 * i, &b, 2);
    }
  }
  return out;
}
// The bytes of a device array of type t -> fp32 values.
inline std::vector<float> from_bytes(DT t, const std::vector<uint8_t>& bytes) {
  const size_t n = bytes.size() / dt_size(t);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DT::f32) {
      std::memcpy(&v[i], bytes.data() + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      v[i] = from_bits16(t, b);
    }
  }
  return v;
}

// Device: any of the three types to fp32 and fp32 to any (round to nearest even).
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename OT>
__device__ __forceinline__ OT from_f32(float v) {
  if constexpr (std::is_same_v<OT, float>) return v;
  else if constexpr (std::is_same_v<OT, __half>) return __float2half_rn(v);
  else return __float2bfloat16_rn(v);
}
__device__ __forceinline__ void store_dt(void* y, size_t i, DT t, float v) {
  if (t == DT::f32) static_cast<float*>(y)[i] = v;
  else if (t == DT::f16) static_cast<__half*>(y)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16*>(y)[i] = __float2bfloat16_rn(v);
}

// N consecutive activations (N = 2, 4 or 8; p aligned to N elements) as fp32,
// through the read-only path: x is small and re-read by every warp, so it
// should live in L1.
template <typename T, int N>
__device__ __forceinline__ void load_x(const T* p, float (&v)[N]) {
  if constexpr (std::is_same_v<T, float>) {
    if constexpr (N == 2) {
      const float2 a = __ldg(reinterpret_cast<const float2*>(p));
      v[0] = a.x, v[1] = a.y;
    } else {
#pragma unroll
      for (int i = 0; i < N / 4; ++i) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(p) + i);
        v[4 * i] = a.x, v[4 * i + 1] = a.y, v[4 * i + 2] = a.z, v[4 * i + 3] = a.w;
      }
    }
  } else {
    // 16-bit: N values are N * 2 bytes: one 4-, 8- or 16-byte load.
    uint32_t w[N / 2];
    if constexpr (N == 2) {
      w[0] = __ldg(reinterpret_cast<const unsigned int*>(p));
    } else if constexpr (N == 4) {
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
      v[2 * i] = to_f32(pair[0]);
      v[2 * i + 1] = to_f32(pair[1]);
    }
  }
}

// ---------------------------------------------------------------- reductions
// Reduce-scatter of V values (V a power of two, <= 32) over the 32 lanes:
// afterwards lane l holds the warp-wide sum of v[l >> (5 - log2 V)]. Each
// halving step sends half the remaining values to the partner lane, so the
// whole reduction costs V - 1 + (5 - log2 V) shuffles instead of 5 V.
// All indices are compile-time constants (no local memory).
// One halving step per level, by template recursion so that every index is
// a compile-time constant (a nested run-time loop was left partly rolled by
// the compiler, which put the array in local memory).
template <int N, int OFF>
__device__ __forceinline__ void reduce_scatter_level(float* v, int lane) {
  if constexpr (N > 1) {
    // Lanes with this offset bit keep the upper half, the others the lower.
    const bool upper = (lane & OFF) != 0;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const float send = upper ? v[i] : v[i + N / 2];
      const float keep = upper ? v[i + N / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, OFF);
    }
    reduce_scatter_level<N / 2, OFF / 2>(v, lane);
  } else if constexpr (OFF > 0) {
    // Lanes that differ only in the remaining low bits share an index:
    // finish with a plain butterfly.
    v[0] += __shfl_xor_sync(kFull, v[0], OFF);
    reduce_scatter_level<1, OFF / 2>(v, lane);
  }
}
template <int V>
__device__ __forceinline__ float warp_reduce_scatter(float (&v)[V]) {
  static_assert(V >= 1 && V <= 32 && (V & (V - 1)) == 0, "V must be a power of two <= 32");
  reduce_scatter_level<V, 16>(v, static_cast<int>(threadIdx.x & 31));
  return v[0];
}

// ---------------------------------------------------------------- bookkeeping
struct Results {
  int pass = 0, fail = 0;
  // One line per check: "PASS name: detail" or "FAIL name: detail".
  void record(bool ok, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", buf);
    std::fflush(stdout);
    (ok ? pass : fail)++;
  }
  // The last line, as run_all.sh expects it; the exit status.
  int finish() const {
    std::printf("SUMMARY %d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
  }
};

inline bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return true;
  return false;
}

// ---------------------------------------------------------------- timing
// How many copies of a working set of `bytes` make the copies together at
// least 3x the L2 (so that a launch never finds its inputs left in L2 by the
// previous one), at most 1024 and at most 2 GB in all.
inline int rotation_copies(size_t bytes) {
  static int l2 = [] {
    int dev = 0, v = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, dev));
    return v;
  }();
  const size_t want = (3 * static_cast<size_t>(l2) + bytes - 1) / std::max<size_t>(bytes, 1);
  const size_t cap = std::max<size_t>(1, (size_t{2} << 30) / std::max<size_t>(bytes, 1));
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>({want, cap, 1024})));
}

// Median time of one launch in microseconds: `launches` calls of
// launch(stream, i) are captured into one CUDA graph (which also proves the
// launchers capturable: no allocation, no synchronisation), the graph is
// replayed `reps` times after 3 warm-ups, and the median replay time is
// divided by `launches`. Back-to-back kernels in a graph are what a decode
// step runs, so the gaps between them count, as they would there.
inline float graph_time_us(int launches, const std::function<void(cudaStream_t, int)>& launch, int reps = 15) {
  // Work queued on the legacy stream (uploads, poisoning) must finish first:
  // a non-blocking stream does not wait for it.
  CUDA_CHECK(cudaDeviceSynchronize());
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < launches; ++i) launch(s, i);
  CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) CUDA_CHECK(cudaGraphLaunch(exec, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> t(reps);
  for (int r = 0; r < reps; ++r) {
    CUDA_CHECK(cudaEventRecord(a, s));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&t[r], a, b));
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  CUDA_CHECK(cudaStreamDestroy(s));
  std::sort(t.begin(), t.end());
  return t[reps / 2] * 1e3f / static_cast<float>(launches);
}

// Capture fn(stream) into a CUDA graph and replay it exactly once: the
// validators use it to check that a launcher is capturable and gives the
// same result from a graph.
inline void run_in_graph(const std::function<void(cudaStream_t)>& fn) {
  // Work queued on the legacy stream (uploads, poisoning) must finish first:
  // a non-blocking stream does not wait for it.
  CUDA_CHECK(cudaDeviceSynchronize());
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  fn(s);
  CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_CHECK(cudaGraphLaunch(exec, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  CUDA_CHECK(cudaStreamDestroy(s));
}

// One benchmark line through dev::report (time in us).
inline void bench_line(const char* name, float us, double bytes, double flops) {
  dev::report(name, us * 1e-3f, bytes, flops);
}

// `copies` back-to-back copies of a host array in one device allocation,
// each `stride` bytes apart (stride rounded up to 256 so every copy keeps the
// alignment of the first). host == nullptr: uninitialised (outputs).
struct Rotated {
  uint8_t* base = nullptr;
  size_t stride = 0;
  int copies = 0;
  Rotated(const void* host, size_t bytes, int n) : stride((bytes + 255) / 256 * 256), copies(n) {
    CUDA_CHECK(cudaMalloc(&base, std::max<size_t>(1, stride * copies)));
    for (int i = 0; host && i < copies; ++i)
      CUDA_CHECK(cudaMemcpy(base + stride * i, host, bytes, cudaMemcpyHostToDevice));
  }
  ~Rotated() { cudaFree(base); }
  Rotated(const Rotated&) = delete;
  Rotated& operator=(const Rotated&) = delete;
  template <typename T>
  T* at(int i) const { return reinterpret_cast<T*>(base + stride * (i % copies)); }
};

// ---------------------------------------------------------------- test weights
// A random weight of one format with its exact fp32 dequantization (the
// formulas of src/quant, one rounding each), shared by quant_gemv.cu and
// quant_dequant16.cu. fmt: nf4, fp4, nf4-dq, fp4-dq, int8-tensor,
// int8-channel, int8-tensor-sym, int8-channel-sym, fp16 (dense, the GEMV
// baseline). Codes are uniform random bytes (every code, both nibbles);
// zero points include values outside int8 (a range that excludes 0).
enum class QKind { q4, i8, f16 };
struct HostQuant {
  std::string fmt;
  QKind kind = QKind::q4;
  bool fp4 = false, dq = false, per_channel = false, symmetric = false;
  int64_t out = 0, in = 0;
  int bs = 64;  // 4-bit block size
  std::vector<uint8_t> codes, dq_q;
  std::vector<float> absmax, state2, map, scale;
  std::vector<int32_t> zp;
  float offset = 0.0f;
  std::vector<float> deq;  // [out, in]
  const float* table() const { return fp4 ? kFp4Table : kNf4Table; }
  size_t bytes() const {  // what a kernel must read
    return codes.size() + absmax.size() * 4 + dq_q.size() + state2.size() * 4 + scale.size() * 4 + zp.size() * 4;
  }
};

// tiny_blocks: a quarter of the plain 4-bit blocks get an absmax that makes
// fp32 denormals and a quarter fp16 subnormals (a flush-to-zero or a second
// rounding then changes bits).
inline HostQuant make_quant(const std::string& fmt, int64_t out, int64_t in, int bs, uint64_t seed,
                            bool tiny_blocks = false) {
  HostQuant h;
  h.fmt = fmt, h.out = out, h.in = in, h.bs = bs;
  std::mt19937_64 rng(seed);
  auto u = [&](float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); };
  const int64_t n = out * in;
  h.deq.resize(n);
  if (fmt.rfind("nf4", 0) == 0 || fmt.rfind("fp4", 0) == 0) {
    h.kind = QKind::q4, h.fp4 = fmt[0] == 'f', h.dq = fmt.find("-dq") != std::string::npos;
    h.codes.resize((n + 1) / 2);
    for (auto& b : h.codes) b = static_cast<uint8_t>(rng());
    const int64_t blocks = (n + bs - 1) / bs;
    std::vector<float> am(blocks);
    if (h.dq) {
      h.map = dynamic_map_table(seed ^ 0x5eed);
      h.dq_q.resize(blocks);
      for (auto& q : h.dq_q) q = static_cast<uint8_t>(rng());
      h.state2.resize((blocks + 255) / 256);
      for (auto& s : h.state2) s = u(0.05f, 0.5f);
      h.offset = u(0.5f, 1.0f);
      for (int64_t b = 0; b < blocks; ++b) am[b] = host_nested_absmax(h.map, h.dq_q, h.state2, h.offset, b, 256);
    } else {
      for (auto& a : am) {
        const int kind = tiny_blocks ? static_cast<int>(rng() % 4) : 3;
        a = kind == 0 ? u(1e-41f, 1e-38f) : kind == 1 ? u(1e-7f, 1e-5f) : u(0.01f, 2.0f);
      }
      h.absmax = am;
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t b = h.codes[i >> 1];
      h.deq[i] = h.table()[(i & 1) ? (b & 15) : (b >> 4)] * am[i / bs];  // element 2m: high nibble of byte m
    }
  } else if (fmt.rfind("int8", 0) == 0) {
    h.kind = QKind::i8, h.per_channel = fmt.find("channel") != std::string::npos;
    h.symmetric = fmt.find("sym") != std::string::npos;
    h.codes.resize(n);
    for (auto& b : h.codes) b = static_cast<uint8_t>(rng());
    h.scale.resize(h.per_channel ? out : 1);
    for (auto& s : h.scale) s = u(1e-3f, 1e-2f);
    if (!h.symmetric) {
      h.zp.resize(h.scale.size());
      for (auto& z : h.zp) z = static_cast<int32_t>(rng() % 61) - 30 + ((rng() % 8) == 0 ? 300 : 0);
    }
    for (int64_t j = 0; j < out; ++j) {
      const size_t g = h.per_channel ? j : 0;
      const int32_t z = h.symmetric ? 0 : h.zp[g];
      for (int64_t k = 0; k < in; ++k)
        h.deq[j * in + k] = static_cast<float>(static_cast<int8_t>(h.codes[j * in + k]) - z) * h.scale[g];
    }
  } else {  // fp16
    h.kind = QKind::f16;
    const std::vector<float> w = dev::random_floats(n, seed, 0.1f);
    h.codes = to_bytes(DT::f16, w);
    for (int64_t i = 0; i < n; ++i) h.deq[i] = dev::f16_round(w[i]);
  }
  return h;
}

// Device copies of a HostQuant's arrays, `copies` times (rotation); at(i)
// gives copy i's pointers (null for the parts the format lacks).
struct QuantPtrs {
  const uint8_t* codes;
  const float* absmax;
  const uint8_t* dq_q;
  const float* state2;
  const float* map;
  const float* scale;
  const int32_t* zp;
};
class DeviceQuant {
 public:
  DeviceQuant(const HostQuant& h, int copies)
      : codes_(up(h.codes, copies)), absmax_(up(h.absmax, copies)), dq_q_(up(h.dq_q, copies)),
        state2_(up(h.state2, copies)), map_(up(h.map, 1)), scale_(up(h.scale, copies)), zp_(up(h.zp, copies)) {}
  QuantPtrs at(int i) const {
    return QuantPtrs{codes_->at<uint8_t>(i), get<float>(absmax_, i),   get<uint8_t>(dq_q_, i), get<float>(state2_, i),
                     get<float>(map_, 0),     get<float>(scale_, i),   get<int32_t>(zp_, i)};
  }

 private:
  template <typename T>
  static std::unique_ptr<Rotated> up(const std::vector<T>& v, int copies) {
    return v.empty() ? nullptr : std::make_unique<Rotated>(v.data(), v.size() * sizeof(T), copies);
  }
  template <typename T>
  static const T* get(const std::unique_ptr<Rotated>& r, int i) {
    return r ? r->at<T>(i) : nullptr;
  }
  std::unique_ptr<Rotated> codes_, absmax_, dq_q_, state2_, map_, scale_, zp_;
};

}  // namespace qdev
