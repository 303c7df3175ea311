// LLM.int8() kernels (llm_int8.h). Explicit _rn intrinsics everywhere a
// rounding is defined (and the file is built with -fmad=false too), so no
// multiply-add is contracted: the CPU reference's bits.
#include <cuda_fp16.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/gemm.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/llm_int8.h"

namespace gpt2q::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float round_through_fp16(float v) { return __half2float(__float2half_rn(v)); }

// round(v · scale) into int8; non-finite (absmax 0 or inf) gives 0.
__device__ __forceinline__ int8_t int8_of(float v, float scale) {
  const float r = rintf(__fmul_rn(v, scale));
  if (!isfinite(r)) return 0;
  return static_cast<int8_t>(fminf(fmaxf(r, -127.0f), 127.0f));
}

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

// flags[k] = 1 when |fp16(x[i, k])| >= threshold for some row i. Each
// thread takes one column over a slice of the rows.
template <typename T>
__global__ void outlier_flags_kernel(const T* x, int64_t rows, int64_t in, float threshold, int64_t rows_per_block,
                                     uint8_t* flags) {
  const int64_t k = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (k >= in) return;
  const int64_t r0 = int64_t{blockIdx.y} * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  bool any = false;
  for (int64_t i = r0; i < r1 && !any; ++i) any = fabsf(round_through_fp16(to_float(x[i * in + k]))) >= threshold;
  if (any) flags[k] = 1;  // a benign race: every writer stores 1
}

// The flagged columns in ascending order, and their count: one block,
// each thread a contiguous chunk of columns, a block-wide prefix count.
__global__ void compact_kernel(const uint8_t* flags, int64_t in, int32_t* cols, int32_t* count) {
  __shared__ int32_t offsets[kThreads];
  const int64_t chunk = (in + kThreads - 1) / kThreads;
  const int64_t c0 = threadIdx.x * chunk, c1 = c0 + chunk < in ? c0 + chunk : in;
  int32_t mine = 0;
  for (int64_t k = c0; k < c1; ++k) mine += flags[k];
  offsets[threadIdx.x] = mine;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t run = 0;
    for (int t = 0; t < kThreads; ++t) {
      const int32_t v = offsets[t];
      offsets[t] = run;
      run += v;
    }
    *count = run;
  }
  __syncthreads();
  int32_t at = offsets[threadIdx.x];
  for (int64_t k = c0; k < c1; ++k)
    if (flags[k]) cols[at++] = static_cast<int32_t>(k);
}

// One block per row: the absmax of the non-outlier elements (only the
// outlier elements themselves leave it, not their columns), then the codes.
template <typename T>
__global__ void quantize_rows_kernel(const T* x, int64_t rows, int64_t in, float threshold, const uint8_t* flags,
                                     float* sca, int8_t* codes) {
  __shared__ float scratch[32];
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const T* xi = x + i * in;
    float m = 0.0f;
    for (int64_t k = threadIdx.x; k < in; k += blockDim.x) {
      const float a = fabsf(round_through_fp16(to_float(xi[k])));
      if (threshold > 0.0f && a >= threshold) continue;
      m = fmaxf(m, a);
    }
    m = block_max(m, scratch, 0.0f);
    if (threadIdx.x == 0) sca[i] = m;
    const float scale = __fdiv_rn(127.0f, m);  // an IEEE division, as the CPU's
    for (int64_t k = threadIdx.x; k < in; k += blockDim.x)
      codes[i * in + k] = flags[k] ? 0 : int8_of(round_through_fp16(to_float(xi[k])), scale);
  }
}

// acc[i, j] = Σ_k a[i, k] · b[j, k], exact in int32 (dp4a, 4 bytes a step),
// for shapes cuBLASLt's int8 kernels do not take. One thread per output.
__global__ void int8_gemm_kernel(const int8_t* a, const int8_t* b, int64_t rows, int64_t in, int64_t out,
                                 int32_t* acc) {
  for (int64_t t = grid_start(); t < rows * out; t += grid_stride()) {
    const int64_t i = t / out, j = t % out;
    const int8_t* ai = a + i * in;
    const int8_t* bj = b + j * in;
    int32_t s = 0;
    for (int64_t k = 0; k < in; ++k) s += int32_t{ai[k]} * int32_t{bj[k]};
    acc[t] = s;
  }
}

__device__ __forceinline__ float gelu_new(float v) {
  const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
  return v / (1.0f + expf(-2.0f * u));
}
__device__ __forceinline__ float gelu_erf(float v) { return v * (0.5f * erfcf(-v * 0.7071067811865476f)); }

// bnb's epilogue (fp16 rounding: fmaf(acc·SCA·SCB, const, 0), then + bias
// rounded to fp16 again; or all fp32), the outlier part added, then the
// op's epilogue. Outlier weights are (CB · SCB) · (1/127); each output sums
// its outlier columns in ascending order, a multiply then an add.
template <typename X, typename Y, typename B>
__global__ void finish_kernel(const int32_t* acc, const float* sca, const int8_t* cb, const float* scb, const B* bias,
                              const X* x, const int32_t* outlier_cols, const int32_t* outlier_count, int64_t rows,
                              int64_t in, int64_t out, bool fp32_epilogue, int activation, bool accumulate, Y* y) {
  const int32_t n_out = *outlier_count;
  for (int64_t t = grid_start(); t < rows * out; t += grid_stride()) {
    const int64_t i = t / out, j = t % out;
    const float p = __fmul_rn(__fmul_rn(static_cast<float>(acc[t]), sca[i]), scb[j]);
    const float b = bias ? to_float(bias[j]) : 0.0f;
    float v;
    if (!fp32_epilogue) {
      v = round_through_fp16(__fmaf_rn(p, qformat::kLlmInt8DequantConst, 0.0f));
      if (bias) v = round_through_fp16(__fadd_rn(v, b));
    } else {
      v = __fmaf_rn(p, qformat::kLlmInt8DequantConst, b);
    }
    if (n_out > 0) {
      float s = 0.0f;
      for (int32_t c = 0; c < n_out; ++c) {
        const int64_t k = outlier_cols[c];
        const float w = __fmul_rn(__fmul_rn(static_cast<float>(cb[j * in + k]), scb[j]), qformat::kInv127);
        s = __fadd_rn(s, __fmul_rn(to_float(x[i * in + k]), w));
      }
      v = __fadd_rn(v, s);
    }
    if (accumulate) {
      y[t] = from_float<Y>(__fadd_rn(to_float(y[t]), v));
    } else {
      if (activation == 1) v = gelu_new(v);
      if (activation == 2) v = gelu_erf(v);
      y[t] = from_float<Y>(v);
    }
  }
}

}  // namespace

size_t llm_int8_scratch_bytes(int64_t rows, int64_t in, int64_t out) {
  return align_up(rows * in) + align_up(rows * 4) + align_up(in) + align_up(in * 4) + align_up(4) +
         align_up(rows * out * 4);
}

LlmInt8Scratch llm_int8_scratch(void* base, int64_t rows, int64_t in, int64_t /*out: acc comes last*/) {
  char* p = static_cast<char*>(base);
  LlmInt8Scratch s;
  s.codes = reinterpret_cast<int8_t*>(p);
  p += align_up(rows * in);
  s.sca = reinterpret_cast<float*>(p);
  p += align_up(rows * 4);
  s.flags = reinterpret_cast<uint8_t*>(p);
  p += align_up(in);
  s.outlier_cols = reinterpret_cast<int32_t*>(p);
  p += align_up(in * 4);
  s.outlier_count = reinterpret_cast<int32_t*>(p);
  p += align_up(4);
  s.acc = reinterpret_cast<int32_t*>(p);
  return s;
}

void llm_int8_quantize_rows(const void* x, DType x_dtype, int64_t rows, int64_t in, float threshold,
                            const LlmInt8Scratch& s, cudaStream_t stream) {
  check_cuda(cudaMemsetAsync(s.flags, 0, in, stream), "cudaMemsetAsync (outlier flags)");
  with_float_type(
      x_dtype,
      [&](auto t) {
        using T = decltype(t);
        const T* xt = static_cast<const T*>(x);
        if (threshold > 0.0f) {
          const int64_t rows_per_block = 64;
          const dim3 grid(static_cast<unsigned>((in + kThreads - 1) / kThreads),
                          static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block));
          outlier_flags_kernel<T><<<grid, kThreads, 0, stream>>>(xt, rows, in, threshold, rows_per_block, s.flags);
          check_launch("LLM.int8 outlier flags kernel");
        }
        const unsigned blocks = static_cast<unsigned>(rows < 65535 ? rows : 65535);
        quantize_rows_kernel<T><<<blocks, kThreads, 0, stream>>>(xt, rows, in, threshold, s.flags, s.sca, s.codes);
        check_launch("LLM.int8 quantize kernel");
      },
      [&] { fail_bad_value("LLM.int8: unsupported activation dtype", static_cast<int64_t>(x_dtype)); });
  compact_kernel<<<1, kThreads, 0, stream>>>(s.flags, in, s.outlier_cols, s.outlier_count);
  check_launch("LLM.int8 outlier columns kernel");
}

void llm_int8_gemm(const int8_t* codes, const int8_t* cb, int64_t rows, int64_t in, int64_t out, int32_t* acc,
                   cudaStream_t stream) {
  // cuBLASLt's int8 kernels need leading dimensions that are multiples of 4
  // (and 16-byte aligned pointers, which the pool's blocks are).
  if (in % 4 == 0 && out % 4 == 0) {
    GemmCall g;
    g.x = codes;
    g.x_type = CUDA_R_8I;
    g.w = cb;
    g.w_type = CUDA_R_8I;
    g.w_out_in = true;
    g.rows = rows;
    g.in = in;
    g.out = out;
    g.y = acc;
    g.y_type = CUDA_R_32I;
    gemm(g, stream);
    return;
  }
  int8_gemm_kernel<<<elementwise_blocks(rows * out), kElementwiseThreads, 0, stream>>>(codes, cb, rows, in, out, acc);
  check_launch("LLM.int8 int8 GEMM kernel");
}

void llm_int8_finish(const backend::QuantLinearArgs& a, const LlmInt8Scratch& s, cudaStream_t stream) {
  const int64_t rows = a.rows, in = a.w.format.in, out = a.w.format.out;
  const int activation = a.epilogue.activation == backend::Activation::gelu_new   ? 1
                         : a.epilogue.activation == backend::Activation::gelu_erf ? 2
                                                                                   : 0;
  auto bad = [&] { fail_bad_value("LLM.int8: unsupported dtype", static_cast<int64_t>(a.y_dtype)); };
  with_float_type(
      a.x_dtype,
      [&](auto xt) {
        using X = decltype(xt);
        with_float_type(
            a.y_dtype,
            [&](auto yt) {
              using Y = decltype(yt);
              with_float_type(
                  a.bias_dtype,
                  [&](auto bt) {
                    using B = decltype(bt);
                    finish_kernel<X, Y, B><<<elementwise_blocks(rows * out), kElementwiseThreads, 0, stream>>>(
                        s.acc, s.sca, a.w.int8_codes(), a.w.scales, static_cast<const B*>(a.bias),
                        static_cast<const X*>(a.x), s.outlier_cols, s.outlier_count, rows, in, out,
                        a.llm_int8_fp32_epilogue, activation, a.epilogue.accumulate, static_cast<Y*>(a.y));
                  },
                  bad);
            },
            bad);
      },
      bad);
  check_launch("LLM.int8 epilogue kernel");
}

}  // namespace gpt2q::cuda
