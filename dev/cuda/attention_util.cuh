// Helpers shared by attention_prefill.cu and attention_decode.cu (common.cuh
// is shared by every harness and stays as it is; what only the attention
// harnesses need lives here): element-type traits, the warp-level PTX
// wrappers (cp.async, ldmatrix, mma.sync), the PASS/FAIL check and the
// command line.
#pragma once
#include <string>
#include <type_traits>

#include "common.cuh"

namespace dev {

constexpr float kLog2e = 1.4426950408889634f;

// ---- element types ---------------------------------------------------------
// Tolerances: what 16-bit rounding alone gives, with ~5x margin; an indexing
// bug moves the error to ~1e-1 or more. Prefill rounds P to 16 bits before
// P·V (flash-attention does too) and rounds the output; decode keeps fp32
// until the output is rounded. Stated per type because bf16 has 8 mantissa
// bits and fp16 11.
template <typename T>
struct Elem;

template <>
struct Elem<__half> {
  using T2 = __half2;
  static constexpr const char* name = "f16";
  static constexpr double prefill_rel = 2e-3, prefill_abs = 4e-3;
  static constexpr double decode_rel = 1e-3, decode_abs = 1.5e-3;
  static __host__ __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __host__ __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ float2 to_float2(__half2 x) { return __half22float2(x); }
  // lo goes to the low 16 bits: the element with the smaller column index.
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

template <>
struct Elem<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static constexpr const char* name = "bf16";
  static constexpr double prefill_rel = 1e-2, prefill_abs = 2e-2;
  static constexpr double decode_rel = 8e-3, decode_abs = 1e-2;
  static __host__ __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __host__ __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ float2 to_float2(__nv_bfloat162 x) { return __bfloat1622float2(x); }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

// 8 consecutive 16-bit elements (one 16-byte load) to floats, from the
// register words (no address taken: a uint4 whose address is taken can be
// sent to local memory).
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // bf16 -> fp32 is a 16-bit shift
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    } else {
      f[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] & 0xFFFFu)));
      f[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] >> 16)));
    }
  }
}

// ---- PTX wrappers ----------------------------------------------------------
// 16-byte global->shared copy that bypasses L1 (.cg); src_size 0 zero-fills
// the destination without reading, so rows past the end come in as zeros
// (finite: 0 * zero-row stays 0 in P·V, where stale data could be NaN).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_size = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8m..8m+7 give the row addresses of matrix m,
// and register m of lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of
// matrix m (.trans: column l/4, rows 2(l%4), 2(l%4)+1).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// d += a·b, m16n8k16, fp32 accumulators. Fragments (g = lane/4, c = lane%4):
// a = {A[g][2c..], A[g+8][2c..], A[g][2c+8..], A[g+8][2c+8..]} (row-major
// 16x16), b = {B[2c..][g], B[2c+8..][g]} (16x8, col-major: k pairs in one
// register), d = {D[g][2c], D[g][2c+1], D[g+8][2c], D[g+8][2c+1]}.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "fp16 or bf16 only");
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// ---- host side -------------------------------------------------------------
// Like common.cuh's random_floats (uniform in [-scale, scale], never all
// zeros) but ~10x faster (splitmix64): for multi-MB KV caches drawn afresh
// for every one of hundreds of checks.
inline std::vector<float> fast_random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& f : v) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    f = scale * (static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f);  // 24 random bits -> [-1, 1)
  }
  return v;
}
template <typename T>
std::vector<T> to_elem(const std::vector<float>& f) {
  std::vector<T> out(f.size());
  for (size_t i = 0; i < f.size(); ++i) out[i] = Elem<T>::from_float(f[i]);
  return out;
}
template <typename T>
std::vector<float> to_floats(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Elem<T>::to_float(v[i]);
  return out;
}
inline uint16_t bits16(const void* p) {
  uint16_t u;
  std::memcpy(&u, p, 2);
  return u;
}

// ---- timing (beside common.cuh's time_ms) ----------------------------------
// Per-call time (ms) of fn() issued `rep` times back to back inside one CUDA
// graph on stream s: the steady state of a captured decode step, without
// per-launch CPU overhead. s must not be the legacy default stream.
template <typename Fn>
float graph_ms_per_call(Fn&& fn, cudaStream_t s, int rep = 20) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int r = 0; r < rep; ++r) fn();
  CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const float ms = time_ms([&] { CUDA_CHECK(cudaGraphLaunch(exec, s)); }, 5, 50, s) / rep;
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  return ms;
}

// Median time (ms) of one plain fn() between events, the L2 flushed before
// each (a memset of a buffer several times its size, outside the events):
// a cold call, launch latency included.
template <typename Fn>
float cold_ms(Fn&& fn, void* flush, size_t flush_bytes, cudaStream_t s, int iters = 30) {
  std::vector<float> t(iters);
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaMemsetAsync(flush, i & 0xFF, flush_bytes, s));
    CUDA_CHECK(cudaEventRecord(a, s));
    fn();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&t[i], a, b));
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

inline int g_pass = 0, g_fail = 0;

// One PASS/FAIL line: every covered element enters rel L2 and max abs (a NaN
// anywhere fails both); `bad_untouched` counts other violations (elements
// outside the covered set that lost their poison, cache mismatches, ...).
inline bool check_case(const std::string& name, const std::vector<float>& got, const std::vector<double>& want,
                       double tol_rel, double tol_abs, size_t bad_untouched = 0,
                       const char* bad_what = "elements outside the output written") {
  const double rel = rel_l2(got.data(), want.data(), got.size());
  const double mx = max_abs_err(got.data(), want.data(), got.size());
  const bool ok = !std::isnan(rel) && !std::isnan(mx) && rel <= tol_rel && mx <= tol_abs && bad_untouched == 0;
  std::printf("%s %-62s n=%-9zu rel_l2 %.2e (tol %.0e)  max_abs %.2e (tol %.0e)", ok ? "PASS" : "FAIL", name.c_str(),
              got.size(), rel, tol_rel, mx, tol_abs);
  if (bad_untouched) std::printf("  %zu %s", bad_untouched, bad_what);
  std::printf("\n");
  (ok ? g_pass : g_fail)++;
  return ok;
}

struct Options {
  bool validate_only = false;
};
inline Options parse_options(int argc, char** argv, const char* what) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--validate-only") == 0) {
      o.validate_only = true;
    } else {
      std::printf("usage: %s [--validate-only]\n  %s\n  --validate-only: small sizes, no benchmark (for compute-sanitizer)\n",
                  argv[0], what);
      std::exit(std::strcmp(argv[i], "--help") == 0 ? 0 : 2);
    }
  }
  cudaDeviceProp p;
  CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  std::printf("device: %s, sm_%d%d, %d SMs, L2 %d MiB, %s\n", p.name, p.major, p.minor, p.multiProcessorCount,
              p.l2CacheSize >> 20, o.validate_only ? "validate only" : "validate + benchmark");
  return o;
}

inline int finish() {
  std::printf("SUMMARY %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

}  // namespace dev
