#include "quant/gptq_format.h"

#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace gpt2q::quant {

namespace {

// Bit position of code k (0..31) of a group of 32 three-bit codes, counted
// across its three words: codes are laid out back to back, 3 bits each, so
// code k occupies bits 3k .. 3k + 2 of the 96-bit group (AutoGPTQ's 10 +
// split + 10 + split + 10 is exactly this).
void put3(uint32_t* w, int64_t k, uint32_t code) {
  const int64_t bit = 3 * k;
  w[bit / 32] |= (code & 7u) << (bit % 32);
  if (bit % 32 > 29) w[bit / 32 + 1] |= (code & 7u) >> (32 - bit % 32);
}
uint32_t get3(const uint32_t* w, int64_t k) {
  const int64_t bit = 3 * k;
  uint32_t v = w[bit / 32] >> (bit % 32);
  if (bit % 32 > 29) v |= w[bit / 32 + 1] << (32 - bit % 32);
  return v & 7u;
}

void check_packable(int64_t n, int bits, const std::string& what, const char* dim) {
  if ((n * bits) % 32 != 0)
    fail("{}: GPTQ layout: {} = {} at {} bits does not fill 32-bit words (need a multiple of {})", what, dim, n, bits,
         bits == 3 ? 32 : 32 / bits);
}

}  // namespace

void pack_codes(const uint32_t* codes, int64_t n, int bits, uint32_t* words) {
  const int64_t nw = n * bits / 32;
  for (int64_t k = 0; k < nw; ++k) words[k] = 0;
  if (bits == 3) {
    for (int64_t k = 0; k < n; ++k) put3(words, k, codes[k]);
    return;
  }
  const int per = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t k = 0; k < n; ++k) words[k / per] |= (codes[k] & mask) << (bits * (k % per));
}

void unpack_codes(const uint32_t* words, int64_t n, int bits, uint32_t* codes) {
  if (bits == 3) {
    for (int64_t k = 0; k < n; ++k) codes[k] = get3(words, k);
    return;
  }
  const int per = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t k = 0; k < n; ++k) codes[k] = (words[k / per] >> (bits * (k % per))) & mask;
}

GptqTensors pack_gptq(const GroupQuantized& q, const std::string& what) {
  const int bits = q.bits;
  check_packable(q.in, bits, what, "in");
  check_packable(q.out, bits, what, "out");
  const int64_t groups = q.groups(), out = q.out, in = q.in;
  GptqTensors t;
  // qweight[r, o]: the codes of column o along the input dimension.
  t.qweight = Tensor::empty({in * bits / 32, out}, DType::I32);
  std::vector<uint32_t> line(static_cast<size_t>(std::max(in, out))), words(line.size());
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) line[static_cast<size_t>(i)] = q.codes[static_cast<size_t>(o * in + i)];
    pack_codes(line.data(), in, bits, words.data());
    for (int64_t r = 0; r < in * bits / 32; ++r)
      t.qweight.data<int32_t>()[r * out + o] = static_cast<int32_t>(words[static_cast<size_t>(r)]);
  }
  t.qzeros = Tensor::empty({groups, out * bits / 32}, DType::I32);
  t.scales = Tensor::empty({groups, out}, DType::F16);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t o = 0; o < out; ++o) {
      const int32_t zero = q.zeros[static_cast<size_t>(g * out + o)];
      if (zero < 1 || zero > (1 << bits))
        fail("{}: GPTQ layout: zero point {} cannot be stored (v1 stores zero - 1 in {} bits)", what, zero, bits);
      line[static_cast<size_t>(o)] = static_cast<uint32_t>(zero - 1);
      t.scales.data<uint16_t>()[g * out + o] = float_to_half(q.scales[static_cast<size_t>(g * out + o)]);
    }
    pack_codes(line.data(), out, bits, reinterpret_cast<uint32_t*>(t.qzeros.data<int32_t>() + g * out * bits / 32));
  }
  t.g_idx = Tensor::from_vector(q.g_idx, {in});
  return t;
}

QuantizedTensor to_quantized_tensor(const GptqTensors& t, int bits, int64_t out, int64_t in, int64_t group_size,
                                    bool symmetric, const std::string& what) {
  QuantizedTensor w;
  w.format.scheme = qformat::Scheme::group_int;
  w.format.out = out;
  w.format.in = in;
  w.format.bits = bits;
  w.format.groups = t.scales.defined() && t.scales.ndim() == 2 ? t.scales.dim(0) : 0;
  w.format.group_size = group_size;
  w.format.symmetric = symmetric;
  w.codes = t.qweight;
  w.scales = t.scales;
  w.zero_points = t.qzeros;
  w.g_idx = t.g_idx;
  w.validate(what);
  return w;
}

GroupQuantized unpack_gptq(const GptqTensors& t, int bits, int64_t out, int64_t in, bool symmetric,
                           const std::string& what) {
  check_group_options({bits, -1, symmetric}, in, what);
  check_packable(in, bits, what, "in");
  check_packable(out, bits, what, "out");
  auto expect = [&](const Tensor& x, const char* name, DType dtype, int64_t rows, int64_t cols) {
    if (!x.defined()) fail("{}: GPTQ layout: {} is missing", what, name);
    if (x.dtype() != dtype || x.ndim() != (cols < 0 ? 1 : 2) || x.dim(0) != rows || (cols >= 0 && x.dim(1) != cols))
      fail("{}: GPTQ layout: {} is {} {}, expected {} [{}{}]", what, name, dtype_name(x.dtype()),
           shape_str(x.shape()), dtype_name(dtype), rows, cols < 0 ? std::string() : ", " + std::to_string(cols));
  };
  expect(t.qweight, "qweight", DType::I32, in * bits / 32, out);
  expect(t.g_idx, "g_idx", DType::I32, in, -1);
  if (!t.scales.defined() || t.scales.ndim() != 2) fail("{}: GPTQ layout: scales must be F16 [groups, {}]", what, out);
  const int64_t groups = t.scales.dim(0);
  expect(t.scales, "scales", DType::F16, groups, out);
  expect(t.qzeros, "qzeros", DType::I32, groups, out * bits / 32);
  GroupQuantized q;
  q.bits = bits;
  q.out = out;
  q.in = in;
  q.symmetric = symmetric;
  q.g_idx.assign(t.g_idx.data<int32_t>(), t.g_idx.data<int32_t>() + in);
  for (int32_t g : q.g_idx)
    if (g < 0 || g >= groups) fail("{}: GPTQ layout: g_idx holds group {} of {}", what, g, groups);
  q.group_size = groups == 1 ? in : (in + groups - 1) / groups;
  q.codes.resize(static_cast<size_t>(out * in));
  std::vector<uint32_t> words(static_cast<size_t>(in * bits / 32)), line(static_cast<size_t>(std::max(in, out)));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t r = 0; r < in * bits / 32; ++r)
      words[static_cast<size_t>(r)] = static_cast<uint32_t>(t.qweight.data<int32_t>()[r * out + o]);
    unpack_codes(words.data(), in, bits, line.data());
    for (int64_t i = 0; i < in; ++i) q.codes[static_cast<size_t>(o * in + i)] = static_cast<uint8_t>(line[static_cast<size_t>(i)]);
  }
  q.scales.resize(static_cast<size_t>(groups * out));
  q.zeros.resize(static_cast<size_t>(groups * out));
  for (int64_t g = 0; g < groups; ++g) {
    unpack_codes(reinterpret_cast<const uint32_t*>(t.qzeros.data<int32_t>() + g * out * bits / 32), out, bits,
                 line.data());
    for (int64_t o = 0; o < out; ++o) {
      q.zeros[static_cast<size_t>(g * out + o)] = static_cast<int32_t>(line[static_cast<size_t>(o)]) + 1;
      q.scales[static_cast<size_t>(g * out + o)] = half_to_float(t.scales.data<uint16_t>()[g * out + o]);
    }
  }
  return q;
}

}  // namespace gpt2q::quant
