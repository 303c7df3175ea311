// Row gathers from dense tables of any float type into fp32 rows (the
// embedding lookup of 16-bit tables). Packed tables decode in dequant.cu.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

template <typename T>
__global__ void gather_kernel(const T* table, int64_t cols, const int64_t* idx, int64_t n, float* out,
                              bool accumulate) {
  for (int64_t t = grid_start(); t < n * cols; t += grid_stride()) {
    const float v = to_float(table[idx[t / cols] * cols + t % cols]);
    out[t] = accumulate ? out[t] + v : v;
  }
}

}  // namespace

void gather_dense_rows(const void* table, DType dtype, int64_t cols, const int64_t* idx, int64_t n, float* out,
                       bool accumulate, cudaStream_t stream) {
  if (n <= 0 || cols <= 0) return;
  with_float_type(
      dtype,
      [&](auto t) {
        using T = decltype(t);
        gather_kernel<T><<<elementwise_blocks(n * cols), kElementwiseThreads, 0, stream>>>(
            static_cast<const T*>(table), cols, idx, n, out, accumulate);
      },
      [&] { fail_bad_value("gather_rows: unsupported table dtype", static_cast<int64_t>(dtype)); });
  check_launch("gather kernel");
}

}  // namespace gpt2q::cuda
