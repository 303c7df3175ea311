#include "ops/quantized_tensor.h"

#include <fmt/format.h>

#include "core/error.h"

namespace gpt2q {

namespace {

using qformat::Scheme;

const void* ptr(const Tensor& t) { return t.defined() ? t.raw() : nullptr; }

void expect(const std::string& what, const char* part, const Tensor& t, DType dtype, int64_t numel) {
  if (!t.defined()) fail("{}: quantized weight has no {}", what, part);
  if (t.dtype() != dtype || t.numel() != numel)
    fail("{}: quantized weight's {} is {} {}, expected {} with {} values", what, part, dtype_name(t.dtype()),
         shape_str(t.shape()), dtype_name(dtype), numel);
}

}  // namespace

size_t QuantizedTensor::bytes() const {
  size_t n = 0;
  for (const Tensor* t : {&codes, &scales, &zero_points, &nested_codes, &nested_scales, &row_sums, &g_idx})
    if (t->defined()) n += t->nbytes();
  if (format.scheme == Scheme::blockwise4 && format.nested) n += sizeof(float);  // the offset
  return n;
}

std::string QuantizedTensor::format_name() const {
  switch (format.scheme) {
    case Scheme::llm_int8:
      return "llm-int8";
    case Scheme::int8_affine:
      return fmt::format("int8-{}{}", format.per_channel ? "channel" : "tensor", format.symmetric ? "-sym" : "");
    case Scheme::blockwise4:
      return fmt::format("{}{}", format.code == qformat::Code4::nf4 ? "nf4" : "fp4", format.nested ? "-dq" : "");
    case Scheme::group_int:
      return fmt::format("int{}-g{}{}", format.bits, format.group_size, format.symmetric ? "-sym" : "");
  }
  return "?";
}

qformat::WeightView QuantizedTensor::view() const {
  qformat::WeightView v;
  v.format = format;
  v.codes = ptr(codes);
  v.scales = static_cast<const float*>(ptr(scales));
  v.zero_points = static_cast<const int32_t*>(ptr(zero_points));
  v.nested_codes = static_cast<const uint8_t*>(ptr(nested_codes));
  v.nested_scales = static_cast<const float*>(ptr(nested_scales));
  v.row_sums = static_cast<const int32_t*>(ptr(row_sums));
  v.g_idx = static_cast<const int32_t*>(ptr(g_idx));
  if (format.scheme == Scheme::group_int) {
    v.scales = nullptr;
    v.scales_f16 = static_cast<const uint16_t*>(ptr(scales));
  }
  return v;
}

void QuantizedTensor::validate(const std::string& what) const {
  const qformat::Format& f = format;
  if (f.out <= 0 || f.in <= 0) fail("{}: quantized weight of shape [{}, {}]", what, f.out, f.in);
  const Device d = device();
  for (const Tensor* t : {&scales, &zero_points, &nested_codes, &nested_scales, &row_sums, &g_idx})
    if (t->defined() && t->device() != d) fail("{}: quantized weight's parts are on different devices", what);
  switch (f.scheme) {
    case Scheme::blockwise4:
      if (f.blocksize <= 0) fail("{}: blocksize {}", what, f.blocksize);
      expect(what, "codes", codes, DType::U8, qformat::packed4_bytes(f.numel()));
      if (f.nested) {
        if (f.nested_blocksize <= 0) fail("{}: nested blocksize {}", what, f.nested_blocksize);
        expect(what, "nested absmax codes", nested_codes, DType::U8, f.blocks());
        expect(what, "nested scales", nested_scales, DType::F32, qformat::block_count(f.blocks(), f.nested_blocksize));
      } else {
        expect(what, "absmax", scales, DType::F32, f.blocks());
      }
      return;
    case Scheme::int8_affine: {
      const int64_t groups = f.per_channel ? f.out : 1;
      expect(what, "codes", codes, DType::I8, f.numel());
      expect(what, "scales", scales, DType::F32, groups);
      if (!f.symmetric) expect(what, "zero points", zero_points, DType::I32, groups);
      return;
    }
    case Scheme::llm_int8:
      expect(what, "CB", codes, DType::I8, f.numel());
      expect(what, "SCB", scales, DType::F32, f.out);
      if (row_sums.defined()) expect(what, "row sums", row_sums, DType::I32, f.out);
      return;
    case Scheme::group_int:
      if (f.bits != 2 && f.bits != 3 && f.bits != 4 && f.bits != 8) fail("{}: {} bits per code", what, f.bits);
      if ((f.in * f.bits) % 32 != 0 || (f.out * f.bits) % 32 != 0 || f.groups < 1)
        fail("{}: a [{}, {}] weight at {} bits in {} groups does not pack into 32-bit words", what, f.out, f.in,
             f.bits, f.groups);
      expect(what, "qweight", codes, DType::I32, f.in * f.bits / 32 * f.out);
      expect(what, "scales", scales, DType::F16, f.groups * f.out);
      expect(what, "qzeros", zero_points, DType::I32, f.groups * (f.out * f.bits / 32));
      expect(what, "g_idx", g_idx, DType::I32, f.in);
      if (g_idx.device() == Device::CPU)
        for (int64_t i = 0; i < f.in; ++i)
          if (g_idx.data<int32_t>()[i] < 0 || g_idx.data<int32_t>()[i] >= f.groups)
            fail("{}: g_idx[{}] = {} names no group (there are {})", what, i, g_idx.data<int32_t>()[i], f.groups);
      return;
  }
}

QuantizedTensor to_device(const QuantizedTensor& w, Device device) {
  QuantizedTensor r;
  r.format = w.format;
  auto move = [&](const Tensor& t) { return t.defined() ? to_device(t, device) : Tensor(); };
  r.codes = move(w.codes);
  r.scales = move(w.scales);
  r.zero_points = move(w.zero_points);
  r.nested_codes = move(w.nested_codes);
  r.nested_scales = move(w.nested_scales);
  r.row_sums = move(w.row_sums);
  r.g_idx = move(w.g_idx);
  return r;
}

}  // namespace gpt2q
