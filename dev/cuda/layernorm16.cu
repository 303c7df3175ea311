// LayerNorm of the residual stream for the forward pass: x fp32 [rows, C] ->
// y [rows, C] as fp16 / bf16 / fp32, weight and bias fp32 [C], eps.
//
// Statistics, all in fp32 from values held in registers (x is read once):
//   m1   = sum(x) / C                         (first pass)
//   d    = x - m1;  sd = sum(d);  sq = sum(d*d)  (second pass, one reduction of two values)
//   mean = m1 + sd / C;  var = max(sq / C - (sd / C)^2, 0)
// i.e. the mean, then the variance of deviations from it, with the classic
// correction term (Chan, Golub & LeVeque) that removes the first pass's
// rounding error from the mean: a residual stream with a large common
// offset (tested: 1000 + noise, and channels of +-300) keeps fp32 accuracy.
// y = fma((x - mean) * rstd, w, b), rstd = 1 / sqrtf(var + eps) (IEEE).
//
// Candidates (--validate-only skips the benchmark):
//   warp_vec:    one warp per row, float4 loads of x / w / b, C % 4 == 0 and
//                C <= 1024 (NV = ceil(C / 128) float4 per lane, templated);
//                16-byte (fp32) or 8-byte (16-bit) stores.
//   warp_scalar: one warp per row, one value per lane per step, any C <= 1024.
//   block:       one 256-thread block per row, any C; re-reads x from L1/L2
//                for each pass instead of holding it.
// The launcher takes warp_vec, else warp_scalar, else block.
#include "quant_common.cuh"

using qdev::DT;

enum class LnKernel { autok, warp_vec, warp_scalar, block };
const char* ln_name(LnKernel k) {
  const char* n[] = {"auto", "warp_vec", "warp_scalar", "block"};
  return n[static_cast<int>(k)];
}
constexpr int kWarpsPerBlock = 4, kBlockThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(qdev::kFull, v, o);
  return v;
}

// Mean and 1/std from the two passes' warp-wide sums (see the header).
struct Stats {
  float mean, rstd;
};
__device__ __forceinline__ Stats finish_stats(float m1, float sd, float sq, int C, float eps) {
  const float dm = sd / C;
  const float var = fmaxf(sq / C - dm * dm, 0.0f);
  return {m1 + dm, 1.0f / sqrtf(var + eps)};
}

template <typename OT>
__device__ __forceinline__ void store4(OT* dst, float a, float b, float c, float d) {
  if constexpr (std::is_same_v<OT, float>) {
    *reinterpret_cast<float4*>(dst) = make_float4(a, b, c, d);
  } else {
    OT v[4] = {qdev::from_f32<OT>(a), qdev::from_f32<OT>(b), qdev::from_f32<OT>(c), qdev::from_f32<OT>(d)};
    uint2 w;
    memcpy(&w, v, 8);
    *reinterpret_cast<uint2*>(dst) = w;
  }
}

template <typename OT, int NV>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    ln_warp_vec(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float eps,
                int rows, int C, OT* __restrict__ y) {
  const int row = blockIdx.x * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int groups = C / 4;
  const float4* xr = reinterpret_cast<const float4*>(x + static_cast<size_t>(row) * C);
  float4 v[NV];
  float s = 0.0f;
#pragma unroll
  for (int t = 0; t < NV; ++t) {
    const int g = lane + 32 * t;
    v[t] = g < groups ? __ldcs(xr + g) : make_float4(0, 0, 0, 0);  // x is read once: stream it
    s += (v[t].x + v[t].y) + (v[t].z + v[t].w);
  }
  const float m1 = warp_sum(s) / C;
  float sd = 0.0f, sq = 0.0f;
#pragma unroll
  for (int t = 0; t < NV; ++t) {
    if (lane + 32 * t < groups) {
      const float d[4] = {v[t].x - m1, v[t].y - m1, v[t].z - m1, v[t].w - m1};
#pragma unroll
      for (int i = 0; i < 4; ++i) sd += d[i], sq = fmaf(d[i], d[i], sq);
    }
  }
  sd = warp_sum(sd), sq = warp_sum(sq);
  const Stats st = finish_stats(m1, sd, sq, C, eps);
  OT* yr = y + static_cast<size_t>(row) * C;
#pragma unroll
  for (int t = 0; t < NV; ++t) {
    const int g = lane + 32 * t;
    if (g < groups) {
      const float4 wv = __ldg(reinterpret_cast<const float4*>(w) + g), bv = __ldg(reinterpret_cast<const float4*>(b) + g);
      store4(yr + 4 * g, fmaf((v[t].x - st.mean) * st.rstd, wv.x, bv.x), fmaf((v[t].y - st.mean) * st.rstd, wv.y, bv.y),
             fmaf((v[t].z - st.mean) * st.rstd, wv.z, bv.z), fmaf((v[t].w - st.mean) * st.rstd, wv.w, bv.w));
    }
  }
}

template <typename OT, int NPER>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    ln_warp_scalar(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float eps,
                   int rows, int C, OT* __restrict__ y) {
  const int row = blockIdx.x * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* xr = x + static_cast<size_t>(row) * C;
  float v[NPER];
  float s = 0.0f;
#pragma unroll
  for (int t = 0; t < NPER; ++t) {
    const int c = lane + 32 * t;
    v[t] = c < C ? __ldcs(xr + c) : 0.0f;
    s += v[t];
  }
  const float m1 = warp_sum(s) / C;
  float sd = 0.0f, sq = 0.0f;
#pragma unroll
  for (int t = 0; t < NPER; ++t) {
    if (lane + 32 * t < C) {
      const float d = v[t] - m1;
      sd += d, sq = fmaf(d, d, sq);
    }
  }
  sd = warp_sum(sd), sq = warp_sum(sq);
  const Stats st = finish_stats(m1, sd, sq, C, eps);
  OT* yr = y + static_cast<size_t>(row) * C;
#pragma unroll
  for (int t = 0; t < NPER; ++t) {
    const int c = lane + 32 * t;
    if (c < C) yr[c] = qdev::from_f32<OT>(fmaf((v[t] - st.mean) * st.rstd, __ldg(w + c), __ldg(b + c)));
  }
}

// Sum of two values over the block (256 threads); every thread gets both.
__device__ __forceinline__ float2 block_sum2(float a, float b, float2* scratch) {
  a = warp_sum(a), b = warp_sum(b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // scratch free (an earlier call's readers are done)
  if (lane == 0) scratch[warp] = make_float2(a, b);
  __syncthreads();
  float2 t = lane < kBlockThreads / 32 ? scratch[lane] : make_float2(0, 0);
  return make_float2(warp_sum(t.x), warp_sum(t.y));
}

template <typename OT>
__global__ void __launch_bounds__(kBlockThreads)
    ln_block(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float eps, int rows,
             int C, OT* __restrict__ y) {
  __shared__ float2 scratch[kBlockThreads / 32];
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* xr = x + static_cast<size_t>(row) * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += kBlockThreads) s += xr[c];
    const float m1 = block_sum2(s, 0.0f, scratch).x / C;
    float sd = 0.0f, sq = 0.0f;
    for (int c = threadIdx.x; c < C; c += kBlockThreads) {
      const float d = xr[c] - m1;
      sd += d, sq = fmaf(d, d, sq);
    }
    const float2 t = block_sum2(sd, sq, scratch);
    const Stats st = finish_stats(m1, t.x, t.y, C, eps);
    OT* yr = y + static_cast<size_t>(row) * C;
    for (int c = threadIdx.x; c < C; c += kBlockThreads) yr[c] = qdev::from_f32<OT>(fmaf((xr[c] - st.mean) * st.rstd, w[c], b[c]));
  }
}

// y[rows, C] = LayerNorm(x) * w + b. Raw device pointers, no allocation, no
// synchronisation (graph-capturable). y must not alias x.
template <typename OT>
void layer_norm_t(const float* x, const float* w, const float* b, float eps, int rows, int C, OT* y, cudaStream_t s,
                  LnKernel k) {
  const bool vec_ok = C % 4 == 0 && C <= 1024 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(w) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(y) % (4 * sizeof(OT)) == 0;
  if (k == LnKernel::autok) k = vec_ok ? LnKernel::warp_vec : C <= 1024 ? LnKernel::warp_scalar : LnKernel::block;
  if (k == LnKernel::warp_vec && !vec_ok) k = LnKernel::warp_scalar;
  if (k == LnKernel::warp_scalar && C > 1024) k = LnKernel::block;
  const unsigned warp_blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int threads = kWarpsPerBlock * 32;
  if (k == LnKernel::warp_vec) {
    switch ((C + 127) / 128) {
      case 1: ln_warp_vec<OT, 1><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      case 2: ln_warp_vec<OT, 2><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      case 3: ln_warp_vec<OT, 3><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      case 4: ln_warp_vec<OT, 4><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      case 5: ln_warp_vec<OT, 5><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      case 6: ln_warp_vec<OT, 6><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      case 7: ln_warp_vec<OT, 7><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
      default: ln_warp_vec<OT, 8><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y); break;
    }
  } else if (k == LnKernel::warp_scalar) {
    if (C <= 128) ln_warp_scalar<OT, 4><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y);
    else if (C <= 256) ln_warp_scalar<OT, 8><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y);
    else if (C <= 512) ln_warp_scalar<OT, 16><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y);
    else ln_warp_scalar<OT, 32><<<warp_blocks, threads, 0, s>>>(x, w, b, eps, rows, C, y);
  } else {
    ln_block<OT><<<std::min(rows, 65535), kBlockThreads, 0, s>>>(x, w, b, eps, rows, C, y);
  }
  CUDA_LAUNCH_CHECK();
}
void layer_norm(const float* x, const float* w, const float* b, float eps, int rows, int C, void* y, DT ydt,
                cudaStream_t s, LnKernel k = LnKernel::autok) {
  if (rows <= 0 || C <= 0) return;
  if (ydt == DT::f32) layer_norm_t(x, w, b, eps, rows, C, static_cast<float*>(y), s, k);
  else if (ydt == DT::f16) layer_norm_t(x, w, b, eps, rows, C, static_cast<__half*>(y), s, k);
  else layer_norm_t(x, w, b, eps, rows, C, static_cast<__nv_bfloat16*>(y), s, k);
}

// ---------------------------------------------------------------- validation
struct Case {
  int rows, C;
  DT ydt;
  LnKernel k;
  bool offset;  // residual-like: 1000 + noise, two channels at +-300, last row constant
  bool graph;
};

void run_case(qdev::Results& res, const Case& c, uint64_t seed) {
  const size_t n = static_cast<size_t>(c.rows) * c.C;
  std::vector<float> x = dev::random_floats(n, seed, c.offset ? 2.0f : 1.0f);
  if (c.offset) {
    for (size_t i = 0; i < n; ++i) {
      const int col = static_cast<int>(i % c.C);
      x[i] += col == 1 % c.C ? 300.0f : col == 7 % c.C ? -300.0f : 1000.0f;
    }
    for (int k = 0; k < c.C; ++k) x[static_cast<size_t>(c.rows - 1) * c.C + k] = 1000.0f;  // variance 0
  }
  const std::vector<float> w = dev::random_floats(c.C, seed + 1, 2.0f), b = dev::random_floats(c.C, seed + 2, 1.0f);
  const float eps = 1e-5f;
  dev::DeviceBuffer<float> dx(x), dw(w), db(b);
  dev::DeviceBuffer<uint8_t> dy(n * qdev::dt_size(c.ydt));
  dy.poison();
  auto launch = [&](cudaStream_t s) { layer_norm(dx.p, dw.p, db.p, eps, c.rows, c.C, dy.p, c.ydt, s, c.k); };
  if (c.graph) qdev::run_in_graph(launch);
  else launch(nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = qdev::from_bytes(c.ydt, dy.download());
  // Double reference; each element held to 1e-5 of its scale
  // (|x|*rstd + |n|)*|w| + |b| (n the normalized value) plus the output
  // type's rounding. |x|*rstd is the conditioning: with a common offset
  // (x ~ 1000, std ~ 50) the fp32 mean alone is off by half an ulp of 1000,
  // which no fp32 kernel can avoid; without one it is about |n|.
  std::vector<double> ref(n);
  double worst = 0;
  size_t bad = 0;
  char first[128] = "";
  const double u_out = c.ydt == DT::f32 ? 0.0 : c.ydt == DT::f16 ? 0x1p-10 : 0x1p-7;
  const double abs_out = c.ydt == DT::f16 ? 0x1p-24 : 0.0;  // fp16 subnormal spacing
  for (int r = 0; r < c.rows; ++r) {
    const float* xr = x.data() + static_cast<size_t>(r) * c.C;
    double mean = 0, var = 0;
    for (int k = 0; k < c.C; ++k) mean += xr[k];
    mean /= c.C;
    for (int k = 0; k < c.C; ++k) var += (xr[k] - mean) * (xr[k] - mean);
    var /= c.C;
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int k = 0; k < c.C; ++k) {
      const size_t i = static_cast<size_t>(r) * c.C + k;
      const double nv = (xr[k] - mean) * rstd;
      ref[i] = nv * w[k] + b[k];
      const double scale = (std::fabs(xr[k]) * rstd + std::fabs(nv)) * std::fabs(w[k]) + std::fabs(b[k]);
      const double err = std::fabs(got[i] - ref[i]);
      if (c.ydt == DT::f32) worst = std::max(worst, err / scale);
      if (!(err <= 1e-5 * scale + u_out * std::fabs(ref[i]) + abs_out) && bad++ == 0)
        std::snprintf(first, sizeof first, " (first: y[%d,%d] = %.7g, want %.7g)", r, k, got[i], ref[i]);
    }
  }
  const double l2 = dev::rel_l2(got.data(), ref.data(), n);
  char worst_s[48] = "";
  if (c.ydt == DT::f32) std::snprintf(worst_s, sizeof worst_s, ", worst err/scale %.1e", worst);
  res.record(bad == 0 && !std::isnan(l2),
             "layernorm rows %3d C %4d -> %-4s %-11s%s%s: rel_l2 %.1e%s, %zu elements out of bound%s", c.rows, c.C,
             qdev::dt_name(c.ydt), ln_name(c.k), c.offset ? " offset 1000" : "", c.graph ? " graph" : "", l2, worst_s,
             bad, first);
}

void benchmark() {
  const int C = 768;
  for (int rows : {1, 51, 13000})
    for (DT ydt : {DT::f16, DT::bf16, DT::f32})
      for (LnKernel k : {LnKernel::warp_vec, LnKernel::warp_scalar, LnKernel::block}) {
        const size_t n = static_cast<size_t>(rows) * C, ybytes = n * qdev::dt_size(ydt);
        const std::vector<float> x = dev::random_floats(n, 3, 1.0f);
        const int copies = qdev::rotation_copies(n * 4 + ybytes);
        const qdev::Rotated xs(x.data(), n * 4, copies), ys(nullptr, ybytes, copies);
        dev::DeviceBuffer<float> w(dev::random_floats(C, 4, 1.0f)), b(dev::random_floats(C, 5, 1.0f));
        const float us = qdev::graph_time_us(copies, [&](cudaStream_t s, int i) {
          layer_norm(xs.at<float>(i), w.p, b.p, 1e-5f, rows, C, ys.at<uint8_t>(i), ydt, s, k);
        });
        char name[80];
        std::snprintf(name, sizeof name, "layernorm %s rows %d C %d -> %s", ln_name(k), rows, C, qdev::dt_name(ydt));
        qdev::bench_line(name, us, static_cast<double>(n * 4 + ybytes + 2 * C * 4), 8.0 * n);
      }
}

int main(int argc, char** argv) {
  const bool validate_only = qdev::has_flag(argc, argv, "--validate-only");
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("layernorm16 on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  qdev::Results res;
  uint64_t seed = 77;
  std::vector<Case> cases;
  for (DT t : {DT::f32, DT::f16, DT::bf16})
    for (int rows : {1, 7, 51, 300}) {
      cases.push_back({rows, 768, t, LnKernel::autok, rows == 51, false});
      for (LnKernel k : {LnKernel::warp_scalar, LnKernel::block}) cases.push_back({rows, 768, t, k, rows == 7, false});
    }
  for (int C : {5, 771, 1600, 5000, 1024, 128, 4, 1, 1025, 3, 256, 132})
    for (DT t : {DT::f32, DT::f16, DT::bf16}) {
      cases.push_back({7, C, t, LnKernel::autok, false, false});
      cases.push_back({51, C, t, LnKernel::autok, true, false});
    }
  for (int C : {1600, 5000, 771}) cases.push_back({300, C, DT::f16, LnKernel::block, true, false});
  if (!validate_only) cases.push_back({13000, 768, DT::f16, LnKernel::autok, true, false});
  cases.push_back({51, 768, DT::bf16, LnKernel::autok, false, true});
  for (const Case& c : cases) run_case(res, c, seed += 11);
  if (!validate_only && res.fail == 0) benchmark();
  return res.finish();
}
