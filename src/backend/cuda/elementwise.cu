// Elementwise kernels: GELU (both forms, on any float type), the residual
// add, dtype conversion, the embedding gather and the bias broadcast.
// Grid-stride loops, one element per step: memory bound, nothing to tile.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

// gelu_new(x) = 0.5·x·(1 + tanh(u)), u = sqrt(2/π)·(x + 0.044715·x³),
// written as x / (1 + exp(-2u)) (the same function: 1 + tanh(u) =
// 2 / (1 + exp(-2u))). The tanh form loses every digit to cancellation for
// negative x, where 1 + tanh(u) is tiny; this form has no cancellation, so
// the result stays within a few ulp down to where it underflows.
template <typename T>
__global__ void gelu_new_kernel(T* x, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/π)
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const float v = to_float(x[i]);
    const float u = k * (v + 0.044715f * v * v * v);
    x[i] = from_float<T>(v / (1.0f + expf(-2.0f * u)));
  }
}

// The same on fp32, four elements a thread (16-byte loads and stores): the
// training forward's GELU over [rows, 4C].
__global__ void gelu_new_x4_kernel(float4* x, int64_t n4) {
  const float k = 0.7978845608028654f;
  auto g = [k](float v) { return v / (1.0f + expf(-2.0f * (k * (v + 0.044715f * v * v * v)))); };
  for (int64_t i = grid_start(); i < n4; i += grid_stride()) {
    float4 v = x[i];
    v.x = g(v.x);
    v.y = g(v.y);
    v.z = g(v.z);
    v.w = g(v.w);
    x[i] = v;
  }
}

// Exact GELU x·Φ(x) with Φ(x) = erfc(-x/√2) / 2: erfc keeps its relative
// accuracy in the left tail, where 1 + erf(x/√2) would cancel.
template <typename T>
__global__ void gelu_erf_kernel(T* x, int64_t n) {
  const float inv_sqrt2 = 0.7071067811865476f;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const float v = to_float(x[i]);
    x[i] = from_float<T>(v * (0.5f * erfcf(-v * inv_sqrt2)));
  }
}

template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) out[i] = from_float<Out>(to_float(in[i]));
}

// F32 -> 16-bit, four elements a thread (16-byte loads, 8-byte stores):
// the bf16 trainer rounds every product's operands through it.
template <typename Out>
__global__ void convert_f32x4_kernel(const float4* in, Out* out, int64_t n4) {
  for (int64_t i = grid_start(); i < n4; i += grid_stride()) {
    const float4 v = in[i];
    Out* o = out + 4 * i;
    o[0] = from_float<Out>(v.x);
    o[1] = from_float<Out>(v.y);
    o[2] = from_float<Out>(v.z);
    o[3] = from_float<Out>(v.w);
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) x[i] += y[i];
}

__global__ void embedding_kernel(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte,
                                 const float* wpe, int64_t cols, float* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride()) {
    const int64_t r = i / cols, c = i % cols;
    out[i] = wte[int64_t{ids[r]} * cols + c] + wpe[positions[r] * cols + c];
  }
}

__global__ void broadcast_rows_kernel(const float* row, int64_t rows, int64_t cols, float* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride()) out[i] = row[i % cols];
}

__global__ void fill_kernel(float* out, int64_t n, float value) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) out[i] = value;
}

}  // namespace

void gelu_new(void* x, DType dtype, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  if (dtype == DType::F32 && n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    gelu_new_x4_kernel<<<elementwise_blocks(n / 4), kElementwiseThreads, 0, stream>>>(static_cast<float4*>(x), n / 4);
    check_launch("gelu_new kernel");
    return;
  }
  with_float_type(
      dtype,
      [&](auto t) {
        using T = decltype(t);
        gelu_new_kernel<T><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(static_cast<T*>(x), n);
      },
      [&] { fail_bad_value("gelu_new: unsupported dtype", static_cast<int64_t>(dtype)); });
  check_launch("gelu_new kernel");
}

void gelu_erf(void* x, DType dtype, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  with_float_type(
      dtype,
      [&](auto t) {
        using T = decltype(t);
        gelu_erf_kernel<T><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(static_cast<T*>(x), n);
      },
      [&] { fail_bad_value("gelu_erf: unsupported dtype", static_cast<int64_t>(dtype)); });
  check_launch("gelu_erf kernel");
}

void convert(const void* in, DType in_dtype, void* out, DType out_dtype, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  auto bad = [&] { fail_bad_value("convert: unsupported dtype", static_cast<int64_t>(in_dtype)); };
  const bool aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
  if (in_dtype == DType::F32 && out_dtype != DType::F32 && n % 4 == 0 && aligned) {
    with_float_type(
        out_dtype,
        [&](auto o) {
          using Out = decltype(o);
          convert_f32x4_kernel<Out><<<elementwise_blocks(n / 4), kElementwiseThreads, 0, stream>>>(
              static_cast<const float4*>(in), static_cast<Out*>(out), n / 4);
        },
        bad);
    check_launch("convert kernel");
    return;
  }
  with_float_type(
      in_dtype,
      [&](auto i) {
        using In = decltype(i);
        with_float_type(
            out_dtype,
            [&](auto o) {
              using Out = decltype(o);
              convert_kernel<In, Out><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
                  static_cast<const In*>(in), static_cast<Out*>(out), n);
            },
            bad);
      },
      bad);
  check_launch("convert kernel");
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, y, n);
  check_launch("add kernel");
}

void embedding(const int32_t* ids, const int64_t* positions, int64_t rows, const float* wte, const float* wpe,
               int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  embedding_kernel<<<elementwise_blocks(rows * cols), kElementwiseThreads, 0, stream>>>(ids, positions, rows, wte,
                                                                                        wpe, cols, out);
  check_launch("embedding kernel");
}

void broadcast_rows(const float* row, int64_t rows, int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  broadcast_rows_kernel<<<elementwise_blocks(rows * cols), kElementwiseThreads, 0, stream>>>(row, rows, cols, out);
  check_launch("broadcast_rows kernel");
}

void fill(float* out, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return;
  fill_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(out, n, value);
  check_launch("fill kernel");
}

}  // namespace gpt2q::cuda
