// Quantized weight decoders (dequant.h). Compiled with -fmad=false
// (CMakeLists.txt): the nested absmax is a multiply then an add, and a fused
// multiply-add would round once instead of twice and differ from the CPU
// reference in the last bit.
//
// Straightforward kernels, verified bit-identical on an H200 (docs/cuda.md).
// Known costs, for the speed work: the 4-bit kernel indexes its code table
// inside the kernel parameters at run time, so nvcc copies the table to local
// memory in every thread; it also divides in 64 bits per value. The fused
// dequantize-GEMV (quant_gemv.cu) is what decode steps (<= 8 rows) run.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequant.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

using qformat::Scheme;

// One packed byte (two values) per step. Both values of a byte share a
// block whenever blocksize is even (bitsandbytes' sizes are powers of two
// >= 32), but the block is looked up per value so that any blocksize works.
template <typename T>
__global__ void dequantize_4bit_kernel(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                                       Code4Table table, T* out) {
  const int64_t bytes = (n + 1) / 2;
  for (int64_t j = grid_start(); j < bytes; j += grid_stride()) {
    const uint8_t byte = packed[j];
    const int64_t i = 2 * j;
    out[i] = from_float<T>(table.value[byte >> 4] * absmax[i / blocksize]);
    if (i + 1 < n) out[i + 1] = from_float<T>(table.value[byte & 0x0f] * absmax[(i + 1) / blocksize]);
  }
}

__global__ void nested_absmax_kernel(const uint8_t* q, const float* state2, float offset, int64_t n,
                                     int64_t nested_blocksize, DynamicMapTable map, float* absmax) {
  for (int64_t i = grid_start(); i < n; i += grid_stride())
    absmax[i] = map.value[q[i]] * state2[i / nested_blocksize] + offset;
}

template <typename T>
__global__ void int8_kernel(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows,
                            int64_t cols, bool per_channel, T* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride()) {
    const int64_t g = per_channel ? i / cols : 0;
    const int32_t zp = zero_point ? zero_point[g] : 0;
    // q - zp is an exact int32; the conversion rounds to nearest as the
    // host's static_cast<float> does.
    out[i] = from_float<T>(static_cast<float>(static_cast<int32_t>(q[i]) - zp) * scale[g]);
  }
}

// The whole-weight decoders' fast forms (dev/cuda/quant_dequant16.cu's
// `coalesced` and int8 `vec`, ~80% of HBM bandwidth there against ~2-3x
// less for the kernels above): 8 values per unit, 4 units per thread with
// every load issued first, one 16-byte store per unit (two for fp32), a
// warp's loads and stores contiguous. They need a power-of-two block size
// >= 8 (a unit then lies in one block), 4-byte aligned codes and 16-byte
// aligned output; the last n % 8 values go one by one in the last block.
// The values are the same operations as above (bit-identical).
constexpr int kVecThreads = 256, kVecUnits = 4;

// 8 consecutive values, dst 16-byte aligned: one 16-byte store (two for fp32).
template <typename T>
__device__ __forceinline__ void store8(T* dst, const float (&v)[8]) {
  if constexpr (std::is_same_v<T, float>) {
    reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const T lo = from_float<T>(v[2 * i]), hi = from_float<T>(v[2 * i + 1]);  // memory order: first in the low half
      uint16_t a, b;
      memcpy(&a, &lo, 2);
      memcpy(&b, &hi, 2);
      w[i] = static_cast<uint32_t>(a) | (static_cast<uint32_t>(b) << 16);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// The table is a __grid_constant__ parameter: indexed in parameter memory
// once per block (into shared memory), not copied to local memory per thread.
template <typename T>
__global__ void __launch_bounds__(kVecThreads)
    dequantize_4bit_vec8_kernel(const uint8_t* packed, const float* absmax, int64_t n, int blocksize_log2,
                                const __grid_constant__ Code4Table table, T* out) {
  __shared__ float s_table[16];
  if (threadIdx.x < 16) s_table[threadIdx.x] = table.value[threadIdx.x];
  __syncthreads();
  const int64_t units = n / 8, first = int64_t{blockIdx.x} * kVecThreads * kVecUnits + threadIdx.x;
  uint32_t w[kVecUnits];
  float am[kVecUnits];
#pragma unroll
  for (int u = 0; u < kVecUnits; ++u) {
    const int64_t i = first + u * kVecThreads;
    w[u] = 0, am[u] = 0.0f;
    if (i < units) {
      w[u] = __ldcs(reinterpret_cast<const unsigned int*>(packed) + i);  // read once: do not keep in L1
      am[u] = __ldg(absmax + ((i * 8) >> blocksize_log2));
    }
  }
#pragma unroll
  for (int u = 0; u < kVecUnits; ++u) {
    const int64_t i = first + u * kVecThreads;
    if (i >= units) continue;
    float v[8];
#pragma unroll
    for (int b = 0; b < 4; ++b) {  // byte b: value 2b in the high nibble, 2b + 1 in the low one
      v[2 * b] = s_table[(w[u] >> (8 * b + 4)) & 15] * am[u];
      v[2 * b + 1] = s_table[(w[u] >> (8 * b)) & 15] * am[u];
    }
    store8(out + i * 8, v);
  }
  const int64_t tail = n - units * 8;
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x < tail) {
    const int64_t e = units * 8 + threadIdx.x;
    out[e] = from_float<T>(s_table[qformat::code4_at(packed, e)] * absmax[e >> blocksize_log2]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kVecThreads)
    int8_vec8_kernel(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows, int64_t cols,
                     bool per_channel, T* out) {
  const int64_t n = rows * cols, units = n / 8, first = int64_t{blockIdx.x} * kVecThreads * kVecUnits + threadIdx.x;
  uint2 w[kVecUnits];
#pragma unroll
  for (int u = 0; u < kVecUnits; ++u) {
    const int64_t i = first + u * kVecThreads;
    w[u] = i < units ? __ldcs(reinterpret_cast<const uint2*>(q) + i) : make_uint2(0, 0);
  }
#pragma unroll
  for (int u = 0; u < kVecUnits; ++u) {
    const int64_t i = first + u * kVecThreads;
    if (i >= units) continue;
    const int64_t g = per_channel ? i * 8 / cols : 0;  // a unit lies in one row (cols % 8 == 0)
    const int32_t zp = zero_point ? zero_point[g] : 0;
    const float s = scale[g];
    float v[8];
#pragma unroll
    for (int b = 0; b < 8; ++b) {
      const int32_t code = static_cast<int8_t>(((b < 4 ? w[u].x : w[u].y) >> (8 * (b & 3))) & 0xff);
      v[b] = static_cast<float>(code - zp) * s;
    }
    store8(out + i * 8, v);
  }
  const int64_t tail = n - units * 8;
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x < tail) {
    const int64_t e = units * 8 + threadIdx.x, g = per_channel ? e / cols : 0;
    out[e] = from_float<T>(static_cast<float>(static_cast<int32_t>(q[e]) - (zero_point ? zero_point[g] : 0)) *
                           scale[g]);
  }
}

bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }
unsigned vec8_blocks(int64_t n) {
  const int64_t per_block = int64_t{kVecThreads} * kVecUnits * 8;
  return static_cast<unsigned>(std::max<int64_t>(1, (n + per_block - 1) / per_block));
}

// LLM.int8's weight as its outlier path sees it: (CB · SCB) · (1/127).
template <typename T>
__global__ void llm_int8_kernel(const int8_t* cb, const float* scb, int64_t rows, int64_t cols, T* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride())
    out[i] = from_float<T>((static_cast<float>(cb[i]) * scb[i / cols]) * qformat::kInv127);
}

// group_int (GPTQ): element (j, i) = scale · (code − zero), the fp16 scale
// widened (exact), code − zero an exact small integer: one rounding, as the
// CPU's decode (qformat's helpers do the unpacking on both).
__device__ inline float group_int_value(const qformat::WeightView& w, int64_t j, int64_t i) {
  const int64_t g = w.g_idx[i];
  const float s = __half2float(__ushort_as_half(w.scales_f16[g * w.format.out + j]));
  return __fmul_rn(s, static_cast<float>(qformat::group_code(w, i, j) - qformat::group_zero(w, g, j)));
}

template <typename T>
__global__ void group_int_kernel(qformat::WeightView w, T* out) {
  const int64_t in = w.format.in, n = w.format.out * in;
  for (int64_t e = grid_start(); e < n; e += grid_stride()) out[e] = from_float<T>(group_int_value(w, e / in, e % in));
}

// Rows idx of any format, fp32, one element per step.
__global__ void rows_kernel(qformat::WeightView w, const float* absmax, Code4Table table, const int64_t* idx,
                            int64_t n, float* out, bool accumulate) {
  const qformat::Format& f = w.format;
  const int64_t cols = f.in;
  for (int64_t t = grid_start(); t < n * cols; t += grid_stride()) {
    const int64_t r = t / cols, c = t % cols, j = idx[r], e = j * cols + c;
    float v;
    if (f.scheme == Scheme::blockwise4) {
      v = table.value[qformat::code4_at(w.packed4(), e)] * absmax[e / f.blocksize];
    } else if (f.scheme == Scheme::int8_affine) {
      const int64_t g = f.per_channel ? j : 0;
      const int32_t zp = w.zero_points ? w.zero_points[g] : 0;
      v = static_cast<float>(static_cast<int32_t>(w.int8_codes()[e]) - zp) * w.scales[g];
    } else if (f.scheme == Scheme::group_int) {
      v = group_int_value(w, j, c);
    } else {
      v = (static_cast<float>(w.int8_codes()[e]) * w.scales[j]) * qformat::kInv127;
    }
    out[t] = accumulate ? out[t] + v : v;
  }
}

Code4Table table_of(qformat::Code4 code) {
  Code4Table t;
  const float* v = qformat::code4_values(code);
  for (int i = 0; i < 16; ++i) t.value[i] = v[i];
  return t;
}

DynamicMapTable dynamic_map() {
  DynamicMapTable m;
  for (int i = 0; i < 256; ++i) m.value[i] = qformat::kDynamicMapSigned[i];
  return m;
}

// The block scales of a blockwise4 weight: its own, or decoded into scratch.
const float* block_absmax(const qformat::WeightView& w, float* scratch, cudaStream_t stream) {
  const qformat::Format& f = w.format;
  if (!f.nested) return w.scales;
  if (!scratch) fail_bad_value("dequantize: a double-quantized weight needs absmax scratch", f.blocks());
  dequantize_nested_absmax(w.nested_codes, w.nested_scales, f.nested_offset, f.blocks(), f.nested_blocksize,
                           dynamic_map(), scratch, stream);
  return scratch;
}

}  // namespace

void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize, const Code4Table& table,
                     float* out, cudaStream_t stream) {
  if (n <= 0) return;
  if (blocksize <= 0) fail_bad_value("4-bit dequantize: blocksize must be positive", blocksize);
  dequantize_4bit_kernel<float><<<elementwise_blocks((n + 1) / 2), kElementwiseThreads, 0, stream>>>(
      packed, absmax, n, blocksize, table, out);
  check_launch("dequantize_4bit kernel");
}

void dequantize_nested_absmax(const uint8_t* q, const float* state2, float offset, int64_t n,
                              int64_t nested_blocksize, const DynamicMapTable& map, float* absmax,
                              cudaStream_t stream) {
  if (n <= 0) return;
  if (nested_blocksize <= 0) fail_bad_value("nested absmax: blocksize must be positive", nested_blocksize);
  nested_absmax_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(q, state2, offset, n,
                                                                                   nested_blocksize, map, absmax);
  check_launch("nested absmax kernel");
}

void dequantize_int8(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows, int64_t cols,
                     bool per_channel, float* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  int8_kernel<float><<<elementwise_blocks(rows * cols), kElementwiseThreads, 0, stream>>>(q, scale, zero_point, rows,
                                                                                          cols, per_channel, out);
  check_launch("int8 dequantize kernel");
}

void dequantize(const qformat::WeightView& w, void* out, DType out_dtype, float* absmax_scratch, cudaStream_t stream) {
  const qformat::Format& f = w.format;
  if (f.numel() <= 0) return;
  with_float_type(
      out_dtype,
      [&](auto t) {
        using T = decltype(t);
        T* o = static_cast<T*>(out);
        switch (f.scheme) {
          case Scheme::blockwise4: {
            if (f.blocksize <= 0) fail_bad_value("4-bit dequantize: blocksize must be positive", f.blocksize);
            const float* absmax = block_absmax(w, absmax_scratch, stream);
            const bool pow2 = (f.blocksize & (f.blocksize - 1)) == 0;
            if (pow2 && f.blocksize >= 8 && aligned(w.packed4(), 4) && aligned(o, 16)) {
              dequantize_4bit_vec8_kernel<T><<<vec8_blocks(f.numel()), kVecThreads, 0, stream>>>(
                  w.packed4(), absmax, f.numel(), __builtin_ctzll(static_cast<unsigned long long>(f.blocksize)),
                  table_of(f.code), o);
            } else {
              dequantize_4bit_kernel<T><<<elementwise_blocks((f.numel() + 1) / 2), kElementwiseThreads, 0, stream>>>(
                  w.packed4(), absmax, f.numel(), f.blocksize, table_of(f.code), o);
            }
            break;
          }
          case Scheme::int8_affine:
            if (aligned(w.int8_codes(), 8) && aligned(o, 16) && (!f.per_channel || f.in % 8 == 0)) {
              int8_vec8_kernel<T><<<vec8_blocks(f.numel()), kVecThreads, 0, stream>>>(
                  w.int8_codes(), w.scales, w.zero_points, f.out, f.in, f.per_channel, o);
            } else {
              int8_kernel<T><<<elementwise_blocks(f.numel()), kElementwiseThreads, 0, stream>>>(
                  w.int8_codes(), w.scales, w.zero_points, f.out, f.in, f.per_channel, o);
            }
            break;
          case Scheme::llm_int8:
            llm_int8_kernel<T><<<elementwise_blocks(f.numel()), kElementwiseThreads, 0, stream>>>(
                w.int8_codes(), w.scales, f.out, f.in, o);
            break;
          case Scheme::group_int:
            group_int_kernel<T><<<elementwise_blocks(f.numel()), kElementwiseThreads, 0, stream>>>(w, o);
            break;
        }
      },
      [&] { fail_bad_value("dequantize: unsupported output dtype", static_cast<int64_t>(out_dtype)); });
  check_launch("dequantize kernel");
}

void dequantize_rows(const qformat::WeightView& w, const int64_t* idx, int64_t n, float* out, bool accumulate,
                     float* absmax_scratch, cudaStream_t stream) {
  if (n <= 0 || w.format.in <= 0) return;
  const float* absmax =
      w.format.scheme == Scheme::blockwise4 ? block_absmax(w, absmax_scratch, stream) : nullptr;
  const Code4Table table = table_of(w.format.code);
  rows_kernel<<<elementwise_blocks(n * w.format.in), kElementwiseThreads, 0, stream>>>(w, absmax, table, idx, n, out,
                                                                                       accumulate);
  check_launch("dequantize rows kernel");
}

}  // namespace gpt2q::cuda
