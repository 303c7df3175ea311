#pragma once
// Tensor-core helpers of the attention kernels (flash_attention.cu,
// decode_attention.cu), moved from the dev/cuda harness where they were
// validated: 16-bit element traits, and the warp-level PTX wrappers
// (cp.async, ldmatrix, mma.sync m16n8k16). Device code only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace gpt2q::cuda {

constexpr float kLog2e = 1.4426950408889634f;

// ---- element types ---------------------------------------------------------
template <typename T>
struct Elem;

template <>
struct Elem<__half> {
  using T2 = __half2;
  static constexpr const char* name = "f16";
  static __host__ __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __host__ __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ float2 to_float2(__half2 x) { return __half22float2(x); }
  // lo goes to the low 16 bits: the element with the smaller column index.
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

template <>
struct Elem<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static constexpr const char* name = "bf16";
  static __host__ __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __host__ __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ float2 to_float2(__nv_bfloat162 x) { return __bfloat1622float2(x); }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

// 8 consecutive 16-bit elements (one 16-byte load) to floats, from the
// register words (no address taken: a uint4 whose address is taken can be
// sent to local memory).
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // bf16 -> fp32 is a 16-bit shift
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    } else {
      f[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] & 0xFFFFu)));
      f[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] >> 16)));
    }
  }
}

// ---- PTX wrappers ----------------------------------------------------------
// 16-byte global->shared copy that bypasses L1 (.cg); src_size 0 zero-fills
// the destination without reading, so rows past the end come in as zeros
// (finite: 0 * zero-row stays 0 in P·V, where stale data could be NaN).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_size = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8m..8m+7 give the row addresses of matrix m,
// and register m of lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of
// matrix m (.trans: column l/4, rows 2(l%4), 2(l%4)+1).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// d += a·b, m16n8k16, fp32 accumulators. Fragments (g = lane/4, c = lane%4):
// a = {A[g][2c..], A[g+8][2c..], A[g][2c+8..], A[g+8][2c+8..]} (row-major
// 16x16), b = {B[2c..][g], B[2c+8..][g]} (16x8, col-major: k pairs in one
// register), d = {D[g][2c], D[g][2c+1], D[g+8][2c], D[g+8][2c+1]}.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "fp16 or bf16 only");
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// The flash-attention tiles shared by the prefill (flash_attention.cu) and
// the training attention (attention_flash_train.cu): a block of W warps
// holds BR = 16·W query rows and two stages of BC = 64 keys, each row
// padded to LDS = HD + 8 elements (16 bytes more), so the 8 row addresses
// of one ldmatrix phase fall in 8 different 16-byte bank groups: no
// conflicts, no swizzle.
template <typename T, int HD, int W>
struct MmaCfg {
  static constexpr int BR = 16 * W, BC = 64, LDS = HD + 8, NT = 32 * W;
  static constexpr size_t smem_bytes = static_cast<size_t>(BR + 4 * BC) * LDS * sizeof(T);
  static_assert(HD % 16 == 0 && HD >= 32 && HD <= 256, "head_dim multiple of 16");
};

// NROWS rows [r0, r0 + NROWS) of one head's q, k or v (g: row 0 of this
// sequence at this head, ld: qkv row stride) into shared memory; rows >= lim
// are zero-filled. 16 bytes per cp.async; every thread issues the same count.
template <typename T, int HD, int NT, int NROWS>
__device__ __forceinline__ void load_rows_async(T* s, const T* g, int64_t ld, int r0, int lim) {
  constexpr int kChunks = HD / 8, LDS = HD + 8;
#pragma unroll
  for (int idx = threadIdx.x; idx < NROWS * kChunks; idx += NT) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool ok = r0 + r < lim;
    const T* src = ok ? g + static_cast<int64_t>(r0 + r) * ld + c * 8 : g;  // g: a valid address, never read
    cp_async16(s + r * LDS + c * 8, src, ok);
  }
}

}  // namespace gpt2q::cuda
