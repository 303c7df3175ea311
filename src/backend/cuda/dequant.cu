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

// LLM.int8's weight as its outlier path sees it: (CB · SCB) · (1/127).
template <typename T>
__global__ void llm_int8_kernel(const int8_t* cb, const float* scb, int64_t rows, int64_t cols, T* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride())
    out[i] = from_float<T>((static_cast<float>(cb[i]) * scb[i / cols]) * qformat::kInv127);
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
            dequantize_4bit_kernel<T><<<elementwise_blocks((f.numel() + 1) / 2), kElementwiseThreads, 0, stream>>>(
                w.packed4(), absmax, f.numel(), f.blocksize, table_of(f.code), o);
            break;
          }
          case Scheme::int8_affine:
            int8_kernel<T><<<elementwise_blocks(f.numel()), kElementwiseThreads, 0, stream>>>(
                w.int8_codes(), w.scales, w.zero_points, f.out, f.in, f.per_channel, o);
            break;
          case Scheme::llm_int8:
            llm_int8_kernel<T><<<elementwise_blocks(f.numel()), kElementwiseThreads, 0, stream>>>(
                w.int8_codes(), w.scales, f.out, f.in, o);
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
