// Quantized weight decoders (dequant.h). Compiled with -fmad=false
// (CMakeLists.txt): the nested absmax is a multiply then an add, and a fused
// multiply-add would round once instead of twice and differ from the CPU
// reference in the last bit.
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequant.h"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

// The code tables come in as kernel parameters and are copied to shared
// memory once per block, because the codes index them at run time. The
// 16-entry table is copied by one thread with compile-time indices: a
// run-time index into a parameter array makes nvcc copy the array to local
// memory in every thread (a 64-byte stack frame in the -Xptxas -v report).
// The 256-entry map is spread over the block's threads, which nvcc reads
// from parameter space directly.
__device__ inline void load_code4_table(const Code4Table& table, float* lut) {
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < 16; ++k) lut[k] = table.value[k];
  }
  __syncthreads();
}

__device__ inline void load_dynamic_map(const DynamicMapTable& map, float* values) {
  for (int k = threadIdx.x; k < 256; k += blockDim.x) values[k] = map.value[k];
  __syncthreads();
}

// Eight values (four packed bytes) per step: one 4-byte load, one absmax
// (blocksize % 8 == 0 keeps all eight in one block) and two 16-byte stores.
// Byte k of the little-endian word holds values 2k (high nibble) and 2k + 1.
__global__ void dequantize_4bit_x8_kernel(const uint32_t* packed, const float* absmax, int64_t groups,
                                          int64_t blocksize, Code4Table table, float4* out) {
  __shared__ float lut[16];
  load_code4_table(table, lut);
  for (int64_t g = grid_start(); g < groups; g += grid_stride()) {
    const uint32_t word = packed[g];
    const float scale = absmax[g * 8 / blocksize];
    float v[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t byte = (word >> (8 * k)) & 0xffu;
      v[2 * k] = lut[byte >> 4] * scale;
      v[2 * k + 1] = lut[byte & 0x0fu] * scale;
    }
    out[2 * g] = make_float4(v[0], v[1], v[2], v[3]);
    out[2 * g + 1] = make_float4(v[4], v[5], v[6], v[7]);
  }
}

// Any blocksize and alignment: one packed byte (two values) per step, from
// byte first_byte on (the tail the x8 kernel leaves, or everything). The
// block is looked up per value, since with an odd blocksize the two values
// of a byte can fall in different blocks.
__global__ void dequantize_4bit_kernel(const uint8_t* packed, const float* absmax, int64_t first_byte, int64_t n,
                                       int64_t blocksize, Code4Table table, float* out) {
  __shared__ float lut[16];
  load_code4_table(table, lut);
  const int64_t bytes = (n + 1) / 2;
  for (int64_t j = first_byte + grid_start(); j < bytes; j += grid_stride()) {
    const uint8_t byte = packed[j];
    const int64_t i = 2 * j;
    out[i] = lut[byte >> 4] * absmax[i / blocksize];
    if (i + 1 < n) out[i + 1] = lut[byte & 0x0f] * absmax[(i + 1) / blocksize];
  }
}

__global__ void nested_absmax_kernel(const uint8_t* q, const float* state2, float offset, int64_t n,
                                     int64_t nested_blocksize, DynamicMapTable map, float* absmax) {
  __shared__ float values[256];
  load_dynamic_map(map, values);
  for (int64_t i = grid_start(); i < n; i += grid_stride())
    absmax[i] = values[q[i]] * state2[i / nested_blocksize] + offset;
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

__global__ void int8_kernel(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows,
                            int64_t cols, bool per_channel, float* out) {
  for (int64_t i = grid_start(); i < rows * cols; i += grid_stride()) {
    const int64_t g = per_channel ? i / cols : 0;
    const int32_t zp = zero_point ? zero_point[g] : 0;
    // q - zp is an exact int32; the conversion rounds to nearest as the
    // host's static_cast<float> does.
    out[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zp) * scale[g];
  }
}

}  // namespace

void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize, const Code4Table& table,
                     float* out) {
  if (n <= 0) return;
  if (blocksize <= 0) fail_bad_value("4-bit dequantize: blocksize must be positive", blocksize);
  // Both kernels compute each value as the same single product, so which
  // one writes a value does not change its bits.
  int64_t vector_values = 0;
  if (blocksize % 8 == 0 && aligned(packed, 4) && aligned(out, 16)) {
    const int64_t groups = n / 8;
    vector_values = groups * 8;
    if (groups > 0) {
      dequantize_4bit_x8_kernel<<<elementwise_blocks(groups), kElementwiseThreads>>>(
          reinterpret_cast<const uint32_t*>(packed), absmax, groups, blocksize, table, reinterpret_cast<float4*>(out));
      check_launch("dequantize_4bit x8 kernel");
    }
  }
  if (vector_values < n) {
    const int64_t first_byte = vector_values / 2, tail_bytes = (n + 1) / 2 - first_byte;
    dequantize_4bit_kernel<<<elementwise_blocks(tail_bytes), kElementwiseThreads>>>(packed, absmax, first_byte, n,
                                                                                     blocksize, table, out);
    check_launch("dequantize_4bit kernel");
  }
}

void dequantize_nested_absmax(const uint8_t* q, const float* state2, float offset, int64_t n,
                              int64_t nested_blocksize, const DynamicMapTable& map, float* absmax) {
  if (n <= 0) return;
  if (nested_blocksize <= 0)
    fail_bad_value("nested absmax: blocksize must be positive", nested_blocksize);
  nested_absmax_kernel<<<elementwise_blocks(n), kElementwiseThreads>>>(q, state2, offset, n, nested_blocksize, map,
                                                                        absmax);
  check_launch("nested absmax kernel");
}

void dequantize_int8(const int8_t* q, const float* scale, const int32_t* zero_point, int64_t rows, int64_t cols,
                     bool per_channel, float* out) {
  if (rows <= 0 || cols <= 0) return;
  int8_kernel<<<elementwise_blocks(rows * cols), kElementwiseThreads>>>(q, scale, zero_point, rows, cols,
                                                                        per_channel, out);
  check_launch("int8 dequantize kernel");
}

}  // namespace gpt2q::cuda
