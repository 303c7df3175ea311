#include "quant/blockwise4.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/quant_linear.h"
#include "core/error.h"

// Each format is defined operation by operation; GCC would otherwise fuse
// a * b + c into one FMA in C++ (-ffp-contract=fast is its default there).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::quant {
namespace {

// The tables by code, as std::arrays (the values: backend/quant_format.h).
constexpr std::array<float, 16> as_array(const float (&v)[16]) {
  std::array<float, 16> a{};
  for (int i = 0; i < 16; ++i) a[i] = v[i];
  return a;
}
constexpr std::array<float, 16> kNf4Table = as_array(qformat::kNf4Values);
constexpr std::array<float, 16> kFp4Table = as_array(qformat::kFp4Values);

// dQuantizeNF4's thresholds: its decimal literals rounded to fp32 (written in
// hex so no parser can round them differently). Four of them are one ulp
// away from the fp32 midpoints bnb's CPU backend computes: t0, t8, t12, t14.
constexpr std::array<float, 15> kNf4Thresholds = {
    -0x1.b239b2p-1f,  // -0.8480964004993439
    -0x1.38a4e0p-1f,  // -0.6106329262256622
    -0x1.d70900p-2f,  // -0.4599952697753906
    -0x1.5bd4ecp-2f,  // -0.33967943489551544
    -0x1.e079d8p-3f,  // -0.23460740596055984
    -0x1.1a7178p-3f,  // -0.13791173323988914
    -0x1.74f0e2p-5f,  // -0.045525018125772476
    0x1.45f5fep-5f,   // 0.03979014977812767
    0x1.ec90c6p-4f,   // 0.1202552504837513
    0x1.a0cfc0p-3f,   // 0.2035212516784668
    0x1.2b05a8p-2f,   // 0.2920137718319893
    0x1.8ea7f2p-2f,   // 0.3893125355243683
    0x1.00da06p-1f,   // 0.5016634166240692
    0x1.491b5ep-1f,   // 0.6427869200706482
    0x1.b913b2p-1f,   // 0.8614784181118011
};

// dQuantizeFP4's thresholds on |s|, ascending, and the code of each magnitude rank.
constexpr std::array<float, 7> kFp4Thresholds = {
    0x1.555572p-9f,  // 0.00260417
    0x1.6p-4f,       // 0.0859375
    0x1.aaaaaap-3f,  // 0.20833333
    0x1.2aaaaap-2f,  // 0.29166667
    0x1.aaaaacp-2f,  // 0.4166667
    0x1.2aaaa0p-1f,  // 0.583333 (sic: fewer digits than 7/12)
    0x1.aaaaaap-1f,  // 0.8333333
};
constexpr std::array<uint8_t, 8> kFp4CodeByRank = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};

void check_options(const Blockwise4Options& opt) {
  const int64_t bs = opt.blocksize;
  if (bs < 32 || bs > 4096 || (bs & (bs - 1)) != 0)
    fail("4-bit quantization: blocksize {} is not one of 32, 64, ..., 4096", bs);
}

uint8_t quantize_code(Code4 type, float s) { return type == Code4::nf4 ? quantize_nf4(s) : quantize_fp4(s); }

}  // namespace

const std::array<float, 16>& code4_table(Code4 type) { return type == Code4::nf4 ? kNf4Table : kFp4Table; }

const char* code4_name(Code4 type) { return type == Code4::nf4 ? "nf4" : "fp4"; }

uint8_t quantize_nf4(float s) {
  // The kernel's comparison tree is a binary search over ascending thresholds
  // with `s > t`: the code is the count of thresholds below s (NaN: none).
  uint8_t code = 0;
  for (float t : kNf4Thresholds) code += s > t ? 1 : 0;
  return code;
}

uint8_t quantize_fp4(float s) {
  const uint8_t sign = s < 0.0f ? 0b1000 : 0;
  const float a = std::fabs(s);
  int rank = 0;
  for (float t : kFp4Thresholds) rank += a > t ? 1 : 0;
  return static_cast<uint8_t>(kFp4CodeByRank[rank] | sign);
}

std::vector<float> Blockwise4Weight::block_absmax() const {
  if (!nested) return absmax;
  std::vector<float> r(static_cast<size_t>(nested->n));
  double_dequantize(*nested, r.data());
  return r;
}

size_t Blockwise4Weight::bytes() const {
  return packed.size() + absmax.size() * sizeof(float) + (nested ? nested->bytes() : 0);
}

std::string Blockwise4Weight::format() const {
  return std::string(code4_name(type)) + (nested ? "-dq" : "");
}

Blockwise4Weight quantize_4bit(const float* w, int64_t out, int64_t in, const Blockwise4Options& opt) {
  check_options(opt);
  if (out <= 0 || in <= 0) fail("4-bit quantization: empty weight [{}, {}]", out, in);
  const int64_t n = out * in;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) fail("4-bit quantization: non-finite weight {} at index {}", w[i], i);
  Blockwise4Weight r;
  r.type = opt.type;
  r.out = out;
  r.in = in;
  r.blocksize = opt.blocksize;
  r.packed.assign(static_cast<size_t>((n + 1) / 2), 0);
  r.absmax.resize(static_cast<size_t>(r.num_blocks()));
  float inv = 0.0f;
  for (int64_t b = 0; b < r.num_blocks(); ++b) {
    const int64_t i0 = b * opt.blocksize, i1 = std::min(n, i0 + opt.blocksize);
    float m = 0.0f;
    for (int64_t i = i0; i < i1; ++i) m = std::max(m, std::fabs(w[i]));
    r.absmax[b] = m;
    inv = 1.0f / m;  // all-zero block: inf, and 0 · inf = NaN -> code 0 (as on CUDA)
    for (int64_t i = i0; i < i1; ++i) {
      const uint8_t c = quantize_code(opt.type, w[i] * inv);
      r.packed[i >> 1] |= (i & 1) ? c : static_cast<uint8_t>(c << 4);
    }
  }
  // The kernel quantizes the missing element of an odd count as a loaded 0.
  if (n & 1) r.packed[n >> 1] |= quantize_code(opt.type, 0.0f * inv);
  if (opt.double_quant) {
    r.nested = double_quantize(r.absmax.data(), r.num_blocks());
    r.absmax.clear();
    r.absmax.shrink_to_fit();
  }
  return r;
}

void dequantize_4bit(const Blockwise4Weight& w, float* out_in) { cpu::quant_dequantize(view_of(w), out_in); }

qformat::WeightView view_of(const Blockwise4Weight& w) {
  qformat::WeightView v;
  v.format.scheme = qformat::Scheme::blockwise4;
  v.format.out = w.out;
  v.format.in = w.in;
  v.format.code = w.type;
  v.format.blocksize = w.blocksize;
  v.codes = w.packed.data();
  if (w.nested) {
    v.format.nested = true;
    v.format.nested_offset = w.nested->offset;
    v.format.nested_blocksize = w.nested->blocksize;
    v.nested_codes = w.nested->q.data();
    v.nested_scales = w.nested->state2.data();
  } else {
    v.scales = w.absmax.data();
  }
  return v;
}

void blockwise4_matmul_reference(const Blockwise4Weight& w, const float* bias, const float* x, int64_t rows,
                                 float* y) {
  cpu::quant_linear_reference(view_of(w), x, rows, bias, y);
}

void blockwise4_matmul(const Blockwise4Weight& w, const float* bias, const float* x, int64_t rows, float* y,
                       Isa isa, DType compute) {
  cpu::QuantLinearOptions opt;
  opt.compute = compute;
  cpu::quant_linear(view_of(w), x, rows, bias, y, opt, isa);
}

}  // namespace gpt2q::quant
