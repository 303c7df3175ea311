// LLM.int8() on the GPU, bit-exact to src/quant/llm_int8.{h,cpp} (the
// formulas are copied from llm_int8.h, the code is not):
//   (1) int8_quantize_rows: x16 = fp16(x); outlier columns (|x16| >= threshold
//       in any row, threshold > 0); SCA[i] = max |x16[i,k]| over the elements
//       below the threshold; CA[i,k] = round_half_even(x16 * (127 / SCA[i]))
//       (IEEE division; non-finite -> 0; clamp +-127), 0 in outlier columns.
//       Kernel quantize_rows (one warp per row; sets the column flags) then
//       finalize (zeroes the outlier columns of CA, and block 0 writes the
//       ascending outlier list and its count, which stay on the device).
//   (2) acc[rows, out] = CA . CB^T in int32: cuBLASLt (CUBLAS_COMPUTE_32I, int8
//       A/B, int32 C; layout and transposes in int8_cublaslt.cuh), else a
//       simple tiled kernel (out or in not a multiple of 4, or no algorithm).
//   (3) int8_epilogue: p = (float(acc) * SCA[i]) * SCB[j];
//       cuda_fp16: y = fp16(fma(p, 6.200012e-05f, 0)), then fp16(y + bias);
//       fp32: y = fma(p, 6.200012e-05f, bias or 0).
//   (4) outlier_part: y[i,j] += sum over outlier k, ascending, of
//       x[i,k] * ((float(CB[j,k]) * SCB[j]) * (1/127)), a multiply then an add
//       each (no FMA), x unrounded; nothing at all when there is no outlier.
// All fp32 steps are __fmul_rn / __fadd_rn / __fmaf_rn / __fdiv_rn, which
// nvcc never contracts or relaxes, so -fmad=true (the default) is fine.
// Candidates: the int8 GEMM through cuBLASLt or the tiled kernel, and the
// epilogue separate from (3 + 4) or fused with (3 into 4) the outlier part.
// cuBLASLt is loaded with dlopen (no link flag needed).
#include "int8_cublaslt.cuh"
#include "quant_common.cuh"

using qdev::DT;

constexpr float kDequantConst = 6.200012e-05f;     // bnb's kdequant_mm_int32_fp16
constexpr float kInv127 = 7.874015718698502e-3f;  // int8_vectorwise_dequant
enum class Epilogue { cuda_fp16, fp32 };

__device__ __forceinline__ float f16_round_dev(float v) { return __half2float(__float2half_rn(v)); }

// ---------------------------------------------------------------- (1) quantize
struct QuantArgs {
  const void* x;  // [rows, in] of XT
  int rows, in;
  float threshold;
  int8_t* ca;      // [rows, in]
  float* sca;      // [rows]
  uint8_t* flags;  // [in], zeroed by the launcher
  int32_t* cols;   // [in]: the outlier columns, ascending
  int32_t* count;  // [1]
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(qdev::kFull, v, o));
  return v;
}

template <typename XT>
__global__ void __launch_bounds__(128) quantize_rows(const QuantArgs a) {
  const int row = blockIdx.x * 4 + static_cast<int>(threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= a.rows) return;
  const XT* xr = static_cast<const XT*>(a.x) + static_cast<size_t>(row) * a.in;
  const bool thr_on = a.threshold > 0.0f;
  float amax = 0.0f;
  for (int k = lane; k < a.in; k += 32) {
    const float h = fabsf(f16_round_dev(qdev::to_f32(xr[k])));
    if (thr_on && h >= a.threshold) {
      a.flags[k] = 1;  // several rows may store the same 1: benign
      continue;        // only the outlier element itself leaves the absmax
    }
    amax = fmaxf(amax, h);  // max is exact: order-free (differs from std::max only for NaN input)
  }
  amax = warp_max(amax);
  if (lane == 0) a.sca[row] = amax;
  const float scale = __fdiv_rn(127.0f, amax);  // IEEE: absmax 0 -> inf -> codes 0 below
  int8_t* q = a.ca + static_cast<size_t>(row) * a.in;
  for (int k = lane; k < a.in; k += 32) {
    float r = rintf(__fmul_rn(f16_round_dev(qdev::to_f32(xr[k])), scale));  // half to even
    if (!isfinite(r)) r = 0.0f;
    q[k] = static_cast<int8_t>(static_cast<int>(fminf(fmaxf(r, -127.0f), 127.0f)));  // outlier columns: finalize
  }
}

constexpr int kFinalizeRows = 32, kFinalizeThreads = 256;
__global__ void __launch_bounds__(kFinalizeThreads) finalize_outliers(const QuantArgs a) {
  const int r0 = blockIdx.x * kFinalizeRows, r1 = min(a.rows, r0 + kFinalizeRows);
  for (int k = threadIdx.x; k < a.in; k += kFinalizeThreads)
    if (a.flags[k])
      for (int r = r0; r < r1; ++r) a.ca[static_cast<size_t>(r) * a.in + k] = 0;
  if (blockIdx.x != 0) return;
  // Block 0: the ascending list. Thread t owns the contiguous columns
  // [t*seg, (t+1)*seg); an exclusive scan of the per-thread counts gives
  // where each thread writes.
  __shared__ int warp_total[kFinalizeThreads / 32];
  const int seg = (a.in + kFinalizeThreads - 1) / kFinalizeThreads;
  const int k0 = min(a.in, static_cast<int>(threadIdx.x) * seg), k1 = min(a.in, k0 + seg);
  int cnt = 0;
  for (int k = k0; k < k1; ++k) cnt += a.flags[k] != 0;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = cnt;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int t = __shfl_up_sync(qdev::kFull, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  int base = 0;
  for (int w = 0; w < warp; ++w) base += warp_total[w];
  int pos = base + incl - cnt;
  for (int k = k0; k < k1; ++k)
    if (a.flags[k]) a.cols[pos++] = k;
  if (threadIdx.x == kFinalizeThreads - 1) *a.count = base + incl;
}

// ---------------------------------------------------------------- (2) int8 GEMM
// acc[rows, out] = A[rows, in] . B[out, in]^T, int32, 16 x 16 tiles.
__global__ void igemm_tiled(const int8_t* A, const int8_t* B, int32_t* C, int rows, int out, int in) {
  __shared__ int As[16][17], Bs[16][17];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int i = blockIdx.y * 16 + ty, j = blockIdx.x * 16 + tx, jb = blockIdx.x * 16 + ty;
  int acc = 0;
  for (int k0 = 0; k0 < in; k0 += 16) {
    As[ty][tx] = i < rows && k0 + tx < in ? A[static_cast<size_t>(i) * in + k0 + tx] : 0;
    Bs[ty][tx] = jb < out && k0 + tx < in ? B[static_cast<size_t>(jb) * in + k0 + tx] : 0;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) acc += As[ty][kk] * Bs[tx][kk];
    __syncthreads();
  }
  if (i < rows && j < out) C[static_cast<size_t>(i) * out + j] = acc;
}

// ---------------------------------------------------------------- (3), (4)
struct EpiArgs {
  const int32_t* acc;  // [rows, out]
  const float* sca;    // [rows]
  const float* scb;    // [out]
  const float* bias;   // [out] or null
  int rows, out, in;
  Epilogue epi;
  const void* x;       // outlier part: unrounded x [rows, in]
  const int8_t* cb;    // [out, in]
  const int32_t* cols;
  const int32_t* count;
  float* y;            // [rows, out]
};

template <typename XT>
__device__ __forceinline__ float outlier_sum(const EpiArgs& a, int i, int j, int count) {
  const XT* xr = static_cast<const XT*>(a.x) + static_cast<size_t>(i) * a.in;
  const int8_t* cbj = a.cb + static_cast<size_t>(j) * a.in;
  const float scb = __ldg(a.scb + j);
  float s = 0.0f;  // 0 + first product, as the reference (turns a -0 product into +0)
  for (int c = 0; c < count; ++c) {
    const int k = __ldg(a.cols + c);
    const float w = __fmul_rn(__fmul_rn(static_cast<float>(cbj[k]), scb), kInv127);
    s = __fadd_rn(s, __fmul_rn(qdev::to_f32(xr[k]), w));
  }
  return s;
}

__device__ __forceinline__ float epilogue_value(const EpiArgs& a, int i, int j) {
  const float p = __fmul_rn(__fmul_rn(__int2float_rn(a.acc[static_cast<size_t>(i) * a.out + j]), __ldg(a.sca + i)),
                            __ldg(a.scb + j));
  if (a.epi == Epilogue::cuda_fp16) {
    // The CUDA kernel writes fp16 without the bias; the bias is then added to that fp16 tensor.
    float v = f16_round_dev(__fmaf_rn(p, kDequantConst, 0.0f));
    if (a.bias) v = f16_round_dev(__fadd_rn(v, __ldg(a.bias + j)));
    return v;
  }
  return __fmaf_rn(p, kDequantConst, a.bias ? __ldg(a.bias + j) : 0.0f);
}

// kFused: y = epilogue + outlier part in one pass; else the epilogue alone (3).
template <typename XT, bool kFused>
__global__ void __launch_bounds__(256) int8_epilogue(const __grid_constant__ EpiArgs a) {
  const int count = kFused ? *a.count : 0;
  for (int i = blockIdx.y; i < a.rows; i += gridDim.y)
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < a.out; j += gridDim.x * blockDim.x) {
      float v = epilogue_value(a, i, j);
      if (kFused && count > 0) v = __fadd_rn(v, outlier_sum<XT>(a, i, j, count));
      a.y[static_cast<size_t>(i) * a.out + j] = v;
    }
}

// (4) alone: y += outlier part (y holds the epilogue's output).
template <typename XT>
__global__ void __launch_bounds__(256) outlier_part(const __grid_constant__ EpiArgs a) {
  const int count = *a.count;
  if (count == 0) return;
  for (int i = blockIdx.y; i < a.rows; i += gridDim.y)
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < a.out; j += gridDim.x * blockDim.x) {
      float* y = a.y + static_cast<size_t>(i) * a.out + j;
      *y = __fadd_rn(*y, outlier_sum<XT>(a, i, j, count));
    }
}

// ---------------------------------------------------------------- launchers
// Caller-owned device scratch (no allocation here).
struct Scratch {
  uint8_t* flags;   // [in]
  int32_t* cols;    // [in]
  int32_t* count;   // [1]
  int8_t* ca;       // [rows, in]
  float* sca;       // [rows]
  int32_t* acc;     // [rows, out]
  void* workspace;  // cuBLASLt
  size_t workspace_bytes;
};
struct Int8Weight {
  const int8_t* cb;  // [out, in]
  const float* scb;  // [out]
  int out, in;
};

template <typename F>
void by_xdt(DT xdt, F&& f) {
  if (xdt == DT::f32) f(float{});
  else if (xdt == DT::f16) f(__half{});
  else f(__nv_bfloat16{});
}

// (1): CA, SCA, the outlier list and its count. Graph-capturable.
void int8_quantize_rows(const void* x, DT xdt, int rows, int in, float threshold, const Scratch& s, cudaStream_t st) {
  CUDA_CHECK(cudaMemsetAsync(s.flags, 0, in, st));
  const QuantArgs a{x, rows, in, threshold, s.ca, s.sca, s.flags, s.cols, s.count};
  by_xdt(xdt, [&](auto t) { quantize_rows<decltype(t)><<<(rows + 3) / 4, 128, 0, st>>>(a); });
  CUDA_LAUNCH_CHECK();
  finalize_outliers<<<std::max(1, (rows + kFinalizeRows - 1) / kFinalizeRows), kFinalizeThreads, 0, st>>>(a);
  CUDA_LAUNCH_CHECK();
}
// (2): through cuBLASLt when `lt` holds a plan for this problem, else tiled.
void int8_gemm(const Int8Weight& w, int rows, const Scratch& s, const LtGemm* lt, cudaStream_t st) {
  if (lt && lt->ok && lt->run(s.ca, w.cb, s.acc, s.workspace, s.workspace_bytes, st)) return;
  igemm_tiled<<<dim3((w.out + 15) / 16, (rows + 15) / 16), dim3(16, 16), 0, st>>>(s.ca, w.cb, s.acc, rows, w.out, w.in);
  CUDA_LAUNCH_CHECK();
}
EpiArgs epi_args(const Int8Weight& w, const float* bias, const void* x, int rows, Epilogue epi, float* y,
                 const Scratch& s) {
  return EpiArgs{s.acc, s.sca, w.scb, bias, rows, w.out, w.in, epi, x, w.cb, s.cols, s.count, y};
}
dim3 epi_grid(int rows, int out) {
  return dim3(static_cast<unsigned>(std::min((out + 255) / 256, 65535)), static_cast<unsigned>(std::min(rows, 65535)));
}
// (3), or (3) fused with (4).
void int8_epilogue_launch(const EpiArgs& a, DT xdt, bool fused, cudaStream_t st) {
  by_xdt(xdt, [&](auto t) {
    if (fused) int8_epilogue<decltype(t), true><<<epi_grid(a.rows, a.out), 256, 0, st>>>(a);
    else int8_epilogue<decltype(t), false><<<epi_grid(a.rows, a.out), 256, 0, st>>>(a);
  });
  CUDA_LAUNCH_CHECK();
}
// (4) alone.
void outlier_part_launch(const EpiArgs& a, DT xdt, cudaStream_t st) {
  by_xdt(xdt, [&](auto t) { outlier_part<decltype(t)><<<epi_grid(a.rows, a.out), 256, 0, st>>>(a); });
  CUDA_LAUNCH_CHECK();
}
// The whole LLM.int8 product: y[rows, out] (fp32).
void llm_int8_forward(const Int8Weight& w, const float* bias, const void* x, DT xdt, int rows, float threshold,
                      Epilogue epi, float* y, const Scratch& s, const LtGemm* lt, bool fused, cudaStream_t st) {
  if (rows <= 0) return;
  int8_quantize_rows(x, xdt, rows, w.in, threshold, s, st);
  int8_gemm(w, rows, s, lt, st);
  const EpiArgs a = epi_args(w, bias, x, rows, epi, y, s);
  int8_epilogue_launch(a, xdt, fused, st);
  if (!fused) outlier_part_launch(a, xdt, st);
}

// ---------------------------------------------------------------- CPU reference
// The formulas of llm_int8.h; `volatile` keeps the host compiler from
// contracting a product and a sum into an FMA.
int8_t host_int8_of(float v, float scale) {
  volatile float prod = v * scale;
  const float r = std::nearbyint(prod);  // half to even in the default rounding mode
  if (!std::isfinite(r)) return 0;
  return static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
}
struct Ref {
  std::vector<int8_t> ca;
  std::vector<float> sca, y;
  std::vector<int32_t> cols, acc;
};
Ref reference(const std::vector<float>& x, int rows, int in, const std::vector<int8_t>& cb,
              const std::vector<float>& scb, int out, const std::vector<float>& bias, float threshold, Epilogue epi) {
  Ref r;
  std::vector<float> x16(x.size());
  for (size_t i = 0; i < x.size(); ++i) x16[i] = dev::f16_round(x[i]);
  std::vector<uint8_t> is_col(in, 0);
  if (threshold > 0.0f)
    for (int i = 0; i < rows; ++i)
      for (int k = 0; k < in; ++k)
        if (std::fabs(x16[static_cast<size_t>(i) * in + k]) >= threshold) is_col[k] = 1;
  for (int k = 0; k < in; ++k)
    if (is_col[k]) r.cols.push_back(k);
  r.ca.assign(static_cast<size_t>(rows) * in, 0);
  r.sca.assign(rows, 0.0f);
  for (int i = 0; i < rows; ++i) {
    float m = 0.0f;
    for (int k = 0; k < in; ++k) {
      const float a = std::fabs(x16[static_cast<size_t>(i) * in + k]);
      if (!(threshold > 0.0f && a >= threshold)) m = std::max(m, a);
    }
    r.sca[i] = m;
    const float scale = 127.0f / m;
    for (int k = 0; k < in; ++k)
      r.ca[static_cast<size_t>(i) * in + k] = is_col[k] ? 0 : host_int8_of(x16[static_cast<size_t>(i) * in + k], scale);
  }
  r.acc.assign(static_cast<size_t>(rows) * out, 0);
  r.y.assign(static_cast<size_t>(rows) * out, 0.0f);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < out; ++j) {
      int32_t s = 0;
      for (int k = 0; k < in; ++k)
        s += int32_t{r.ca[static_cast<size_t>(i) * in + k]} * int32_t{cb[static_cast<size_t>(j) * in + k]};
      r.acc[static_cast<size_t>(i) * out + j] = s;
      volatile float p1 = static_cast<float>(s) * r.sca[i];
      volatile float p = p1 * scb[j];
      const float b = bias.empty() ? 0.0f : bias[j];
      float v;
      if (epi == Epilogue::cuda_fp16) {
        v = dev::f16_round(std::fma(static_cast<float>(p), kDequantConst, 0.0f));
        if (!bias.empty()) {
          volatile float t = v + b;
          v = dev::f16_round(t);
        }
      } else {
        v = std::fma(static_cast<float>(p), kDequantConst, b);
      }
      if (!r.cols.empty()) {
        float o = 0.0f;
        for (int k : r.cols) {
          volatile float w1 = static_cast<float>(cb[static_cast<size_t>(j) * in + k]) * scb[j];
          volatile float w = w1 * kInv127;
          volatile float prod = x[static_cast<size_t>(i) * in + k] * w;
          o = o + prod;
        }
        v = v + o;
      }
      r.y[static_cast<size_t>(i) * out + j] = v;
    }
  return r;
}

// Weights as Int8Params._quantize makes them: w16 = fp16(w), SCB = max|w16|
// per row, CB = round(w16 * (127 / SCB)).
void make_weight(int out, int in, uint64_t seed, std::vector<int8_t>& cb, std::vector<float>& scb) {
  const std::vector<float> w = dev::random_floats(static_cast<size_t>(out) * in, seed, 0.2f);
  cb.resize(w.size());
  scb.resize(out);
  for (int j = 0; j < out; ++j) {
    float m = 0.0f;
    for (int k = 0; k < in; ++k) m = std::max(m, std::fabs(dev::f16_round(w[static_cast<size_t>(j) * in + k])));
    scb[j] = m;
    for (int k = 0; k < in; ++k)
      cb[static_cast<size_t>(j) * in + k] = host_int8_of(dev::f16_round(w[static_cast<size_t>(j) * in + k]), 127.0f / m);
  }
}

// Activations in [-3, 3] with planted outliers: exactly the threshold (6.0),
// 5.999 (6.0 in fp16), -7.5, a value that overflows fp16 (a column whose x16
// is inf), 5.99 (5.988 in fp16: not an outlier, a large absmax), a zero row
// and fp16 subnormals. Rounded to xdt (what the kernel reads).
std::vector<float> make_x(int rows, int in, DT xdt, bool plant, uint64_t seed) {
  std::vector<float> x = dev::random_floats(static_cast<size_t>(rows) * in, seed, 3.0f);
  auto at = [&](int i, int k) -> float& { return x[static_cast<size_t>(i % rows) * in + k % in]; };
  if (plant) {
    at(0, 3) = 6.0f;
    at(rows / 2, 17) = 5.999f;
    at(rows - 1, in / 2) = -7.5f;
    at(1, in - 1) = xdt == DT::f16 ? 60000.0f : 70000.0f;
    at(2, in / 3) = 5.99f;
    at(rows / 3, 40) = 3e-6f;
    at(rows / 3, 41) = -5e-7f;
    if (rows >= 7)
      for (int k = 0; k < in; ++k) at(4, k) = 0.0f;
  }
  for (auto& v : x) v = qdev::round_to(xdt, v);
  return x;
}

// ---------------------------------------------------------------- validation
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct DeviceProblem {  // one problem's device buffers
  dev::DeviceBuffer<uint8_t> x, flags;
  dev::DeviceBuffer<int8_t> cb, ca;
  dev::DeviceBuffer<float> scb, bias, sca, y;
  dev::DeviceBuffer<int32_t> cols, count, acc;
  dev::DeviceBuffer<uint8_t> workspace;
  DeviceProblem(const std::vector<float>& hx, DT xdt, int rows, int in, const std::vector<int8_t>& hcb,
                const std::vector<float>& hscb, const std::vector<float>& hbias)
      : x(qdev::to_bytes(xdt, hx)), flags(in), cb(hcb), ca(static_cast<size_t>(rows) * in), scb(hscb),
        bias(hbias.empty() ? std::vector<float>(1) : hbias), sca(rows), y(static_cast<size_t>(rows) * hscb.size()),
        cols(in), count(1), acc(static_cast<size_t>(rows) * hscb.size()), workspace(kWorkspaceBytes) {}
  Scratch scratch() { return Scratch{flags.p, cols.p, count.p, ca.p, sca.p, acc.p, workspace.p, kWorkspaceBytes}; }
};

struct Case {
  int rows, out, in;
  float threshold;
  Epilogue epi;
  bool bias;
  DT xdt;
  bool plant, graph;
};

template <typename T>
size_t count_diff(const std::vector<T>& a, const std::vector<T>& b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; ++i) d += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return d;
}

void run_case(qdev::Results& res, const Case& c, uint64_t seed) {
  std::vector<int8_t> cb;
  std::vector<float> scb;
  make_weight(c.out, c.in, seed, cb, scb);
  const std::vector<float> x = make_x(c.rows, c.in, c.xdt, c.plant, seed + 1);
  const std::vector<float> bias = c.bias ? dev::random_floats(c.out, seed + 2, 1.0f) : std::vector<float>();
  const Ref ref = reference(x, c.rows, c.in, cb, scb, c.out, bias, c.threshold, c.epi);
  DeviceProblem d(x, c.xdt, c.rows, c.in, cb, scb, bias);
  const Int8Weight w{d.cb.p, d.scb.p, c.out, c.in};
  const LtGemm lt(c.rows, c.out, c.in, kWorkspaceBytes);
  const bool lt_expected = c.out % 4 == 0 && c.in % 4 == 0;
  char shape[160];
  std::snprintf(shape, sizeof shape, "rows %3d [%4d,%4d] thr %g %s%s x %s%s", c.rows, c.out, c.in, c.threshold,
                c.epi == Epilogue::cuda_fp16 ? "cuda_fp16" : "fp32", c.bias ? " bias" : "", qdev::dt_name(c.xdt),
                c.plant ? " planted" : "");
  if (!lt.ok) {
    // Multiples of 4 should have an algorithm; a rows count cuBLASLt refuses is
    // only noted (the tiled kernel covers it), but rows % 4 == 0 must work.
    const bool fail = lt_expected && c.rows % 4 == 0;
    if (fail) res.record(false, "llm_int8 cuBLASLt plan %s: %s", shape, lt.why.c_str());
    else std::printf("NOTE llm_int8 cuBLASLt plan %s: %s (the tiled kernel runs instead)\n", shape, lt.why.c_str());
  }
  for (bool use_lt : {true, false})
    for (bool fused : {true, false}) {
      if (use_lt && !lt.ok && !lt_expected) continue;  // identical to the tiled run
      d.ca.poison(), d.sca.poison(), d.acc.poison(), d.y.poison(), d.cols.poison(), d.count.poison();
      Scratch s = d.scratch();
      auto launch = [&](cudaStream_t st) {
        llm_int8_forward(w, c.bias ? d.bias.p : nullptr, d.x.p, c.xdt, c.rows, c.threshold, c.epi, d.y.p, s,
                         use_lt ? &lt : nullptr, fused, st);
      };
      const bool graph = c.graph && use_lt && fused;
      if (graph) qdev::run_in_graph(launch);
      else launch(nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<int8_t> ca = d.ca.download();
      const std::vector<float> sca = d.sca.download(), y = d.y.download();
      const std::vector<int32_t> acc = d.acc.download(), cols = d.cols.download(), count = d.count.download();
      const size_t dca = count_diff(ca, ref.ca, ca.size()), dsca = count_diff(sca, ref.sca, sca.size());
      const bool cols_ok = count[0] == static_cast<int32_t>(ref.cols.size()) &&
                           std::equal(ref.cols.begin(), ref.cols.end(), cols.begin());
      const size_t dacc = count_diff(acc, ref.acc, acc.size()), dy = count_diff(y, ref.y, y.size());
      char first[96] = "";
      for (size_t i = 0; i < y.size() && dy; ++i)
        if (std::memcmp(&y[i], &ref.y[i], 4) != 0) {
          std::snprintf(first, sizeof first, " (first y[%zu] = %.9g, want %.9g)", i, y[i], ref.y[i]);
          break;
        }
      res.record(dca == 0 && dsca == 0 && cols_ok && dacc == 0 && dy == 0,
                 "llm_int8 %s, gemm %s, epilogue %s%s: %zu outlier cols%s; bits differing: CA %zu, SCA %zu, acc %zu, "
                 "y %zu%s",
                 shape, use_lt ? (lt.ok ? "cublasLt" : "cublasLt->tiled") : "tiled", fused ? "fused" : "separate",
                 graph ? " graph" : "", ref.cols.size(), cols_ok ? "" : " (LIST DIFFERS)", dca, dsca, dacc, dy, first);
    }
}

// ---------------------------------------------------------------- benchmark
void benchmark() {
  struct Shape {
    int out, in;
  };
  for (Shape sh : {Shape{2304, 768}, Shape{768, 3072}})
    for (int rows : {1, 51, 13000}) {
      std::vector<int8_t> cb;
      std::vector<float> scb;
      make_weight(sh.out, sh.in, 11, cb, scb);
      std::vector<float> x = dev::random_floats(static_cast<size_t>(rows) * sh.in, 12, 3.0f);
      for (int k : {5, 100, 300, 700}) x[k % sh.in] = 8.0f;  // four outlier columns
      const std::vector<float> bias = dev::random_floats(sh.out, 13, 1.0f);
      const size_t nx = static_cast<size_t>(rows) * sh.in, ny = static_cast<size_t>(rows) * sh.out;
      const size_t set = nx * 4 + cb.size() + nx + ny * 8;
      const int copies = qdev::rotation_copies(set);
      const qdev::Rotated X(x.data(), nx * 4, copies), CB(cb.data(), cb.size(), copies);
      const qdev::Rotated CA(nullptr, nx, copies), ACC(nullptr, ny * 4, copies), Y(nullptr, ny * 4, copies);
      const qdev::Rotated SCA(nullptr, rows * 4, copies), FL(nullptr, sh.in, copies), COLS(nullptr, sh.in * 4, copies),
          CNT(nullptr, 4, copies);
      dev::DeviceBuffer<float> dscb(scb), dbias(bias);
      dev::DeviceBuffer<uint8_t> ws(kWorkspaceBytes);
      const LtGemm lt(rows, sh.out, sh.in, kWorkspaceBytes);
      auto scratch = [&](int i) {
        return Scratch{FL.at<uint8_t>(i), COLS.at<int32_t>(i), CNT.at<int32_t>(i), CA.at<int8_t>(i),
                       SCA.at<float>(i),  ACC.at<int32_t>(i),  ws.p,               kWorkspaceBytes};
      };
      auto weight = [&](int i) { return Int8Weight{CB.at<int8_t>(i), dscb.p, sh.out, sh.in}; };
      // Every stage once so that the buffers hold valid data for the stages timed alone.
      for (int i = 0; i < copies; ++i)
        llm_int8_forward(weight(i), dbias.p, X.at<float>(i), DT::f32, rows, 6.0f, Epilogue::cuda_fp16, Y.at<float>(i),
                         scratch(i), &lt, true, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      const double ops = 2.0 * rows * sh.out * sh.in;
      char name[96];
      auto line = [&](const char* stage, float us, double bytes, double flops) {
        std::snprintf(name, sizeof name, "llm_int8 %s rows %d [%d,%d]", stage, rows, sh.out, sh.in);
        qdev::bench_line(name, us, bytes, flops);
      };
      line("quantize (3 launches)", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
             int8_quantize_rows(X.at<float>(i), DT::f32, rows, sh.in, 6.0f, scratch(i), st);
           }), nx * 4.0 + nx + rows * 4.0, 0);
      const double gemm_bytes = nx + cb.size() + ny * 4.0;
      if (lt.ok)
        line("gemm cublasLt", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
               int8_gemm(weight(i), rows, scratch(i), &lt, st);
             }), gemm_bytes, ops);
      else std::printf("NOTE no cuBLASLt plan for rows %d [%d,%d]: %s\n", rows, sh.out, sh.in, lt.why.c_str());
      line("gemm tiled", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
             int8_gemm(weight(i), rows, scratch(i), nullptr, st);
           }, rows >= 13000 ? 3 : 15), gemm_bytes, ops);
      auto args = [&](int i) {
        return epi_args(weight(i), dbias.p, X.at<float>(i), rows, Epilogue::cuda_fp16, Y.at<float>(i), scratch(i));
      };
      line("epilogue", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
             int8_epilogue_launch(args(i), DT::f32, false, st);
           }), ny * 8.0, 0);
      line("outlier part (4 cols)", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
             outlier_part_launch(args(i), DT::f32, st);
           }), ny * 8.0, 0);
      line("epilogue+outliers fused", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
             int8_epilogue_launch(args(i), DT::f32, true, st);
           }), ny * 8.0, 0);
      line("forward (lt, fused)", qdev::graph_time_us(copies, [&](cudaStream_t st, int i) {
             llm_int8_forward(weight(i), dbias.p, X.at<float>(i), DT::f32, rows, 6.0f, Epilogue::cuda_fp16,
                              Y.at<float>(i), scratch(i), &lt, true, st);
           }), nx * 4.0 + cb.size() + ny * 4.0, ops);
    }
}

int main(int argc, char** argv) {
  const bool validate_only = qdev::has_flag(argc, argv, "--validate-only");
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("llm_int8 on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  qdev::Results res;
  if (!lt_api().handle) res.record(false, "cuBLASLt: %s", lt_api().error.c_str());
  std::vector<Case> cases;
  const DT F = DT::f32, H = DT::f16, B = DT::bf16;
  // --validate-only runs under memcheck and racecheck: small weights only
  // (every path: cuBLASLt and tiled, both epilogues, fused or not, all x types).
  const std::vector<std::pair<int, int>> shapes =
      validate_only ? std::vector<std::pair<int, int>>{{256, 192}, {64, 768}}
                    : std::vector<std::pair<int, int>>{{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
  for (int rows : {1, 7, 51, 300}) {
    if (validate_only && rows == 300) continue;
    for (auto [out, in] : shapes) {
      cases.push_back({rows, out, in, 6.0f, Epilogue::cuda_fp16, true, F, true, false});
      cases.push_back({rows, out, in, 0.0f, Epilogue::fp32, false, H, true, false});
    }
  }
  const int o = validate_only ? 64 : 768, i = validate_only ? 192 : 768;
  cases.push_back({51, o, i, 6.0f, Epilogue::fp32, true, B, true, false});
  cases.push_back({7, o, i, 6.0f, Epilogue::cuda_fp16, false, H, true, false});
  cases.push_back({validate_only ? 52 : 300, o, validate_only ? 768 : 3072, 6.0f, Epilogue::cuda_fp16, true, F, false,
                   false});                                                             // no outlier at all
  cases.push_back({7, validate_only ? 35 : 771, validate_only ? 42 : 770, 6.0f, Epilogue::cuda_fp16, true, F, true,
                   false});                                                             // tiled GEMM only
  cases.push_back({5, 100, 96, 6.0f, Epilogue::fp32, true, B, true, false});
  cases.push_back({1, o, i, 6.0f, Epilogue::cuda_fp16, true, F, true, true});           // from a CUDA graph
  cases.push_back({52, o, i, 6.0f, Epilogue::cuda_fp16, true, F, true, true});
  uint64_t seed = 4242;
  for (const Case& c : cases) run_case(res, c, seed += 29);
  if (g_lt_failures) res.record(false, "cublasLtMatmul refused %d calls (the tiled kernel ran instead)", g_lt_failures);
  if (!validate_only && res.fail == 0) benchmark();
  if (lt_api().handle) lt_api().destroy(lt_api().handle), lt_api().handle = nullptr;  // nothing left for --leak-check
  return res.finish();
}
