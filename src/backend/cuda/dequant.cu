// Quantized weight decoders (dequant.h). Compiled with -fmad=false
// (CMakeLists.txt): the nested absmax is a multiply then an add, and a fused
// multiply-add would round once instead of twice and differ from the CPU
// reference in the last bit.
//
// Straightforward kernels, verified bit-identical on an H200 (docs/cuda.md).
// Known costs, for the speed work: the 4-bit kernel indexes its code table
// inside the kernel parameters at run time, so nvcc copies the table to local
// memory in every thread (64-byte stack frame in the -Xptxas -v report); it
// also divides in 64 bits per value and stores 4 bytes at a time.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequant.h"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

// One packed byte (two values) per step. Both values of a byte share a
// block whenever blocksize is even (bitsandbytes' sizes are powers of two
// >= 32), but the block is looked up per value so that any blocksize works.
__global__ void dequantize_4bit_kernel(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                                       Code4Table table, float* out) {
  const int64_t bytes = (n + 1) / 2;
  for (int64_t j = grid_start(); j < bytes; j += grid_stride()) {
    const uint8_t byte = packed[j];
    const int64_t i = 2 * j;
    out[i] = table.value[byte >> 4] * absmax[i / blocksize];
    if (i + 1 < n) out[i + 1] = table.value[byte & 0x0f] * absmax[(i + 1) / blocksize];
  }
}

__global__ void nested_absmax_kernel(const uint8_t* q, const float* state2, float offset, int64_t n,
                                     int64_t nested_blocksize, DynamicMapTable map, float* absmax) {
  for (int64_t i = grid_start(); i < n; i += grid_stride())
    absmax[i] = map.value[q[i]] * state2[i / nested_blocksize] + offset;
}

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
  dequantize_4bit_kernel<<<elementwise_blocks((n + 1) / 2), kElementwiseThreads>>>(packed, absmax, n, blocksize,
                                                                                    table, out);
  check_launch("dequantize_4bit kernel");
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
