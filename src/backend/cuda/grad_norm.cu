#include "backend/cuda/grad_norm.h"

#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/launch.cuh"

namespace gpt2q::cuda {

namespace {

constexpr int64_t kChunk = 8192;  // elements per block of the first pass
constexpr int kThreads = 256;

// The segment of chunk c: the last p with first_chunk[p] <= c.
__device__ int64_t segment_of(const int64_t* first_chunk, int64_t count, int64_t c) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (first_chunk[mid] <= c) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// table: offset[count], numel[count], first_chunk[count + 1].
struct Table {
  const int64_t* offset;
  const int64_t* numel;
  const int64_t* first_chunk;
  int64_t count;
};

__device__ void chunk_range(const Table& t, int64_t c, int64_t& begin, int64_t& end) {
  const int64_t p = segment_of(t.first_chunk, t.count, c);
  const int64_t local = (c - t.first_chunk[p]) * kChunk;
  begin = t.offset[p] + local;
  end = t.offset[p] + min(t.numel[p], local + kChunk);
}

__global__ void __launch_bounds__(kThreads) chunk_squares(const float* flat, Table t, double* partial) {
  __shared__ double scratch[32];
  int64_t begin = 0, end = 0;
  chunk_range(t, blockIdx.x, begin, end);
  double s = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) s += static_cast<double>(flat[i]) * flat[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// segment_sq[p] = Σ partial over p's chunks (one block per segment, fixed order).
__global__ void __launch_bounds__(kThreads) segment_squares(const double* partial, Table t, double* segment_sq) {
  __shared__ double scratch[32];
  const int64_t p = blockIdx.x;
  double s = 0.0;
  for (int64_t c = t.first_chunk[p] + threadIdx.x; c < t.first_chunk[p + 1]; c += kThreads) s += partial[c];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) segment_sq[p] = s;
}

__global__ void finish(const double* segment_sq, int64_t count, double max_norm, backend::GradClip* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *out = backend::finish_grad_clip(segment_sq, count, max_norm);
}

__global__ void __launch_bounds__(kThreads) scale_chunks(float* flat, Table t, const backend::GradClip* clip) {
  int64_t begin = 0, end = 0;
  chunk_range(t, blockIdx.x, begin, end);
  const float coef = clip->coef;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) flat[i] *= coef;
}

}  // namespace

backend::GradClip clip_grad_norm(float* flat, const backend::GradSegment* segments, int64_t count, double max_norm,
                                 cudaStream_t stream) {
  if (count <= 0) return backend::finish_grad_clip(nullptr, 0, max_norm);
  std::vector<int64_t> table(static_cast<size_t>(3 * count + 1));
  int64_t chunks = 0;
  for (int64_t p = 0; p < count; ++p) {
    table[p] = segments[p].offset;
    table[count + p] = segments[p].numel;
    table[2 * count + p] = chunks;
    chunks += (segments[p].numel + kChunk - 1) / kChunk;
  }
  table[3 * count] = chunks;
  if (chunks == 0) {  // every segment empty
    const std::vector<double> zero(static_cast<size_t>(count), 0.0);
    return backend::finish_grad_clip(zero.data(), count, max_norm);
  }
  const size_t table_bytes = table.size() * sizeof(int64_t);
  DeviceBuffer buf(table_bytes + static_cast<size_t>(chunks + count) * sizeof(double) + sizeof(backend::GradClip));
  auto* d_table = buf.get<int64_t>();
  auto* partial = reinterpret_cast<double*>(reinterpret_cast<char*>(d_table) + table_bytes);
  double* segment_sq = partial + chunks;
  auto* d_clip = reinterpret_cast<backend::GradClip*>(segment_sq + count);
  copy_bytes(d_table, Device::CUDA, table.data(), Device::CPU, table_bytes);
  const Table t{d_table, d_table + count, d_table + 2 * count, count};
  chunk_squares<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(flat, t, partial);
  check_launch("grad norm chunk kernel");
  segment_squares<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(partial, t, segment_sq);
  check_launch("grad norm segment kernel");
  finish<<<1, 32, 0, stream>>>(segment_sq, count, max_norm, d_clip);
  check_launch("grad norm finish kernel");
  if (max_norm > 0) {
    scale_chunks<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(flat, t, d_clip);
    check_launch("grad clip scale kernel");
  }
  backend::GradClip clip;
  copy_bytes(&clip, Device::CPU, d_clip, Device::CUDA, sizeof(clip));  // waits for the stream
  return clip;
}

}  // namespace gpt2q::cuda
