#pragma once
// The quantized weight formats as plain data: code tables, block layouts and
// a view of one packed weight. Included by the C++ (quant, ops, backend/cpu)
// and the CUDA code (backend/cuda/*.cu) alike, so that every device decodes
// from the same definitions (ggml's ggml-common.h plays this part there).
// No gpt2q header, no library: C++17 that nvcc compiles.
//
// Layouts (bitsandbytes' own; docs/quantization.md has the why):
//   blockwise4 (NF4 / FP4)  the weight W[out, in] flattened row-major; element
//                           i has a 4-bit code, element 2m in the HIGH nibble
//                           of byte m, 2m + 1 in the low one; blocks of
//                           `blocksize` consecutive elements share one fp32
//                           absmax (a block may straddle rows when in %
//                           blocksize != 0); value = table[code] · absmax.
//                           Double quantization stores absmax[b] as a byte q[b]:
//                           absmax[b] = map[q[b]] · state2[b / 256] + offset.
//   int8_affine             int8 codes [out, in]; scale and zero point per
//                           tensor (one value) or per output row;
//                           value = float(q - zero_point) · scale.
//   llm_int8                CB int8 [out, in], SCB fp32 [out] (row absmax of the
//                           fp16 weight); value = (CB · SCB) · (1/127) for the
//                           outlier columns; the rest runs in int8 (llm_int8.h).
//   group_int (GPTQ)        transformers' gptq checkpoint layout, v1
//                           (quant/gptq_format.h): qweight I32 [in·bits/32,
//                           out] with the codes of each output column along
//                           the input dimension from the low bits up, qzeros
//                           I32 [groups, out·bits/32] (zero − 1, packed the
//                           same way along out), scales F16 [groups, out],
//                           g_idx I32 [in]; value = scale · (code − zero)
//                           with the fp16 scale widened (exact) and
//                           code − zero an exact small integer.
// Every decode is the operations written here, one rounding each, in this
// order: no fused multiply-add (host code builds with -ffp-contract=off; the
// device helpers below use the _rn intrinsics, which nvcc never contracts).
#include <cstdint>

#if defined(__CUDACC__)
#define GPT2Q_HOST_DEVICE __host__ __device__
#else
#define GPT2Q_HOST_DEVICE
#endif

namespace gpt2q::qformat {

enum class Scheme : uint8_t { int8_affine, llm_int8, blockwise4, group_int };
enum class Code4 : uint8_t { nf4, fp4 };

// bitsandbytes' NF4 table (csrc/kernels.cu, dDequantizeNF4), by code.
inline constexpr float kNf4Values[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// FP4 (1 sign, 2 exponent, 1 mantissa bit) by code; codes 8..15 are the
// negatives of 0..7, code 8 being -0.0 as the kernel's lut[0] · -1 gives.
inline constexpr float kFp4Values[16] = {
    0.0f, 0.005208333333f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f,
    -0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f};

// Blocks of absmax values that share one nested scale (state2).
inline constexpr int64_t kNestedBlocksize = 256;

// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), the map
// of double quantization: 256 sorted values. quant/double_quant.cpp builds it
// the way bitsandbytes does; test_quant_double_quant checks that this copy
// equals that construction bit for bit.
inline constexpr float kDynamicMapSigned[256] = {
    -0x1.fc6666p-1f, -0x1.f53334p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f, -0x1.df999ap-1f, -0x1.d86666p-1f,
    -0x1.d13334p-1f, -0x1.cap-1f, -0x1.c2ccccp-1f, -0x1.bb999ap-1f, -0x1.b46666p-1f, -0x1.ad3334p-1f,
    -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.97999ap-1f, -0x1.906666p-1f, -0x1.893334p-1f, -0x1.82p-1f,
    -0x1.7accccp-1f, -0x1.73999ap-1f, -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56ccccp-1f,
    -0x1.4f999ap-1f, -0x1.486668p-1f, -0x1.413334p-1f, -0x1.3ap-1f, -0x1.32ccccp-1f, -0x1.2b999ap-1f,
    -0x1.246668p-1f, -0x1.1d3334p-1f, -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.079998p-1f, -0x1.006666p-1f,
    -0x1.f26664p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f, -0x1.b8ccccp-2f, -0x1.aa6666p-2f,
    -0x1.9cp-2f, -0x1.8d9998p-2f, -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626666p-2f, -0x1.54p-2f,
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f, -0x1.0cp-2f, -0x1.fb3332p-3f,
    -0x1.de6666p-3f, -0x1.c1999ap-3f, -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3334p-3f, -0x1.4e6666p-3f,
    -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f, -0x1.93d70ap-4f, -0x1.8851eep-4f,
    -0x1.7ccccep-4f, -0x1.7147aep-4f, -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb854p-4f, -0x1.433334p-4f,
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f, -0x1.09999ap-4f, -0x1.fc28f6p-5f,
    -0x1.e51ebap-5f, -0x1.ce147ap-5f, -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f,
    -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c29p-5f, -0x1.fd70a4p-6f, -0x1.cf5c2ap-6f,
    -0x1.a147aep-6f, -0x1.733334p-6f, -0x1.451ebap-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f, -0x1.e978d4p-8f, -0x1.c49ba6p-8f,
    -0x1.9fbe76p-8f, -0x1.7ae148p-8f, -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f,
    -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f, -0x1.eecbfep-11f, -0x1.b3d07cp-11f,
    -0x1.78d5p-11f, -0x1.3dd982p-11f, -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, -0x1.040bfep-17f, -0x1.b43528p-19f,
    -0x1.27476ep-21f, 0x0p+0f, 0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f,
    0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f, 0x1.19ce0ap-12f, 0x1.8fc506p-12f,
    0x1.02de02p-11f, 0x1.3dd982p-11f, 0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f, 0x1.0c49bap-8f, 0x1.3126e8p-8f,
    0x1.56041ap-8f, 0x1.7ae148p-8f, 0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f,
    0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f, 0x1.d1eb86p-7f, 0x1.170a3ep-6f,
    0x1.451ebap-6f, 0x1.733334p-6f, 0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f,
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f, 0x1.88f5c2p-5f, 0x1.ap-5f,
    0x1.b70a3ep-5f, 0x1.ce147ap-5f, 0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f,
    0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f, 0x1.4eb854p-4f, 0x1.5a3d7p-4f,
    0x1.65c29p-4f, 0x1.7147aep-4f, 0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f, 0x1.6b3334p-3f, 0x1.88p-3f,
    0x1.a4ccccp-3f, 0x1.c1999ap-3f, 0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f,
    0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f, 0x1.626666p-2f, 0x1.70ccccp-2f,
    0x1.7f3334p-2f, 0x1.8d9998p-2f, 0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26664p-2f, 0x1.006666p-1f, 0x1.079998p-1f, 0x1.0eccccp-1f,
    0x1.16p-1f, 0x1.1d3334p-1f, 0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f,
    0x1.413334p-1f, 0x1.486668p-1f, 0x1.4f999ap-1f, 0x1.56ccccp-1f, 0x1.5ep-1f, 0x1.653334p-1f,
    0x1.6c6668p-1f, 0x1.73999ap-1f, 0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
    0x1.97999ap-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3334p-1f, 0x1.b46666p-1f, 0x1.bb999ap-1f,
    0x1.c2ccccp-1f, 0x1.cap-1f, 0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f,
    0x1.eep-1f, 0x1.f53334p-1f, 0x1.fc6666p-1f, 0x1p+0f,
};

// LLM.int8(): bnb's CUDA epilogue constant (≈ 1/127²) and the 1/127 of
// int8_vectorwise_dequant (the outlier columns).
inline constexpr float kLlmInt8DequantConst = 6.200012e-05f;
inline constexpr float kInv127 = 7.874015718698502e-3f;

// Host code only: device code gets the table by value (the arrays live in host memory).
inline const float* code4_values(Code4 code) { return code == Code4::nf4 ? kNf4Values : kFp4Values; }
GPT2Q_HOST_DEVICE constexpr int64_t packed4_bytes(int64_t n) { return (n + 1) / 2; }
GPT2Q_HOST_DEVICE constexpr int64_t block_count(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }
// The 4-bit code of flattened element i.
GPT2Q_HOST_DEVICE inline uint8_t code4_at(const uint8_t* packed, int64_t i) {
  return (i & 1) ? static_cast<uint8_t>(packed[i >> 1] & 0x0f) : static_cast<uint8_t>(packed[i >> 1] >> 4);
}
// A double-quantized block scale: map[q] · state2 + offset, a multiply and
// then an add, each rounded.
GPT2Q_HOST_DEVICE inline float nested_absmax(float map_value, float state2, float offset) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(map_value, state2), offset);
#else
  return map_value * state2 + offset;
#endif
}

// group_int: code k of a line of `bits`-wide codes packed into 32-bit words
// from the low bits up, a code crossing a word boundary continuing in the
// next word (3 bits). `stride` is the distance between consecutive words of
// the line (qweight: out; qzeros: 1).
GPT2Q_HOST_DEVICE inline uint32_t packed_code(const uint32_t* words, int64_t stride, int bits, int64_t k) {
  const int64_t bit = k * bits, w = bit / 32;
  const int s = static_cast<int>(bit % 32);
  uint32_t v = words[w * stride] >> s;
  if (s + bits > 32) v |= words[(w + 1) * stride] << (32 - s);
  return v & ((1u << bits) - 1u);
}

// What a packed weight is; the sizes of its parts follow from it.
struct Format {
  Scheme scheme = Scheme::blockwise4;
  int64_t out = 0, in = 0;  // nn.Linear order [out, in]
  // blockwise4
  Code4 code = Code4::nf4;
  int64_t blocksize = 64;
  bool nested = false;  // double-quantized absmax
  float nested_offset = 0.0f;
  int64_t nested_blocksize = kNestedBlocksize;
  // int8_affine
  bool per_channel = false;  // a scale (and zero point) per output row
  bool symmetric = false;    // no zero points (int8_affine); group_int: symmetric quantizer (zeros still stored)
  // group_int
  int bits = 4;          // 2, 3, 4 or 8
  int64_t groups = 1;    // rows of scales / qzeros
  int64_t group_size = 0;  // nominal columns per group (what quantize used; g_idx decides)

  GPT2Q_HOST_DEVICE int64_t numel() const { return out * in; }
  GPT2Q_HOST_DEVICE int64_t blocks() const { return block_count(numel(), blocksize); }
};

// Pointers to the parts of one packed weight, on whichever device it lives
// (host or device memory; the kernels of that device read them).
struct WeightView {
  Format format;
  const void* codes = nullptr;            // blockwise4: U8 [ceil(n / 2)]; int8_affine, llm_int8: I8 [out, in]
  const float* scales = nullptr;          // blockwise4: absmax [blocks] (null when nested); int8_affine:
                                          // [1 or out]; llm_int8: SCB [out]
  const int32_t* zero_points = nullptr;   // int8_affine: [1 or out]; null when symmetric
  const uint8_t* nested_codes = nullptr;  // blockwise4 nested: [blocks]
  const float* nested_scales = nullptr;   // blockwise4 nested: state2 [ceil(blocks / nested_blocksize)]
  const int32_t* row_sums = nullptr;      // llm_int8: Σ_k CB[j, k] [out] (the CPU's VNNI kernel)
  // group_int: codes is qweight (I32), zero_points the packed qzeros
  const uint16_t* scales_f16 = nullptr;   // group_int: F16 [groups, out]
  const int32_t* g_idx = nullptr;         // group_int: [in]

  GPT2Q_HOST_DEVICE const uint8_t* packed4() const { return static_cast<const uint8_t*>(codes); }
  GPT2Q_HOST_DEVICE const uint32_t* qweight() const { return static_cast<const uint32_t*>(codes); }
  GPT2Q_HOST_DEVICE const int8_t* int8_codes() const { return static_cast<const int8_t*>(codes); }
};

// group_int: the zero point of output j in group g, and the code of input i
// of output j.
GPT2Q_HOST_DEVICE inline int32_t group_zero(const WeightView& w, int64_t g, int64_t j) {
  const Format& f = w.format;
  const auto* z = reinterpret_cast<const uint32_t*>(w.zero_points) + g * (f.out * f.bits / 32);
  return static_cast<int32_t>(packed_code(z, 1, f.bits, j)) + 1;
}
GPT2Q_HOST_DEVICE inline int32_t group_code(const WeightView& w, int64_t i, int64_t j) {
  return static_cast<int32_t>(packed_code(w.qweight() + j, w.format.out, w.format.bits, i));
}

}  // namespace gpt2q::qformat
