// Shared by the stand-alone kernel harnesses in dev/cuda (llm.c's dev/cuda
// style): each harness holds candidate kernels beside a CPU reference, a
// validator and a benchmark, and is built and run outside the product
// (dev/cuda/build.sh, dev/cuda/run_all.sh). Winners move into
// src/backend/cuda. Nothing in src/ includes this.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#define CUDA_CHECK(call)                                                                              \
  do {                                                                                                \
    cudaError_t err_ = (call);                                                                        \
    if (err_ != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(err_), __FILE__, __LINE__, \
                   cudaGetErrorString(err_));                                                         \
      std::exit(2);                                                                                   \
    }                                                                                                 \
  } while (0)

// After every launch: launch errors at once, faults at the next sync.
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

namespace dev {

// Fresh random values in [-scale, scale] (never zeros: METHOD.md).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }
inline float f16_round(float x) { return __half2float(__float2half(x)); }

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) : n(count) { CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T))); }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { if (p) cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) { CUDA_CHECK(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  // Poison before a run so that unwritten outputs show (0xFF bytes: NaN for floats).
  void poison() { CUDA_CHECK(cudaMemset(p, 0xFF, n * sizeof(T))); }
};

// ‖got − want‖ / ‖want‖ over n values (NaN anywhere -> returns NaN).
inline double rel_l2(const float* got, const double* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(got[i])) return NAN;
    const double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline double max_abs_err(const float* got, const double* want, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(got[i])) return NAN;
    m = std::max(m, std::fabs(got[i] - want[i]));
  }
  return m;
}

// Median time in ms of `iters` runs of fn() on the current stream, after
// `warmup` runs, timed with CUDA events.
template <typename Fn>
float time_ms(Fn&& fn, int warmup = 5, int iters = 50, cudaStream_t stream = nullptr) {
  for (int i = 0; i < warmup; ++i) fn();
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> t(iters);
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventRecord(a, stream));
    fn();
    CUDA_CHECK(cudaEventRecord(b, stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&t[i], a, b));
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

// One line per benchmark, machine-readable: name, time, and the rate
// against the H200's measured ceilings (KINDS.md: ~4.3 TB/s copy, ~790
// TFLOP/s dense bf16).
inline void report(const char* name, float ms, double bytes, double flops) {
  const double s = ms * 1e-3;
  std::printf("BENCH %-48s %9.2f us  %8.1f GB/s (%5.1f%% of 4300)  %8.2f TFLOP/s\n", name, ms * 1e3,
              bytes / s * 1e-9, bytes / s * 1e-9 / 4300 * 100, flops / s * 1e-12);
}

}  // namespace dev
