#include "layers/dense_linear.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "ops/ops.h"

namespace gpt2q {

namespace {

bool is_16bit(DType t) { return t == DType::F16 || t == DType::BF16; }

bool cpu_bf16(const Placement& p) { return p.device == Device::CPU && p.compute == DType::BF16; }

// A host copy of `t` in `dtype` (F32, F16 or BF16), converted exactly from
// F32 or rounded to nearest even (as torch's .to()).
Tensor convert_on_host(const Tensor& t, DType dtype) {
  const Tensor src = to_device(t, Device::CPU);
  Tensor out = Tensor::empty(src.shape(), dtype);
  const int64_t n = src.numel();
  auto read = [&](int64_t i) {
    switch (src.dtype()) {
      case DType::F32: return src.data<float>()[i];
      case DType::F16: return half_to_float(src.data<uint16_t>()[i]);
      default: return bf16_to_float(src.data<uint16_t>()[i]);
    }
  };
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float v = read(i);
    if (dtype == DType::F32) out.data<float>()[i] = v;
    else if (dtype == DType::F16) out.data<uint16_t>()[i] = float_to_half(v);
    else out.data<uint16_t>()[i] = float_to_bf16(v);
  }
  return out;
}

// A host copy of w [in, out] transposed to [out, in], in `dtype` (as
// convert_on_host converts).
Tensor transpose_on_host(const Tensor& w, DType dtype) {
  const Tensor src = convert_on_host(w, dtype);
  const int64_t in = src.dim(0), out = src.dim(1);
  Tensor t = Tensor::empty({out, in}, dtype);
  const size_t es = dtype_size(dtype);
  const auto* s = static_cast<const unsigned char*>(src.raw());
  auto* d = static_cast<unsigned char*>(t.raw());
  // Tiles of 32 x 32 keep both sides' reads in cache.
#pragma omp parallel for schedule(static) if (in * out >= (1 << 16))
  for (int64_t j0 = 0; j0 < out; j0 += 32)
    for (int64_t k0 = 0; k0 < in; k0 += 32)
      for (int64_t j = j0; j < std::min(out, j0 + 32); ++j)
        for (int64_t k = k0; k < std::min(in, k0 + 32); ++k)
          std::memcpy(d + (j * in + k) * es, s + (k * out + j) * es, es);
  return t;
}

}  // namespace

Tensor place_dense_linear_weight(const Tensor& w, const Placement& placement) {
  if (placement.device == Device::CPU) return place_dense_weight(w, placement);
  GPT2Q_CHECK(w.ndim() == 2 && (w.dtype() == DType::F32 || is_16bit(w.dtype())), "dense weight of {} {}",
              dtype_name(w.dtype()), shape_str(w.shape()));
  const DType dtype = placement.compute != DType::F32 ? placement.compute : w.dtype();
  return to_device(transpose_on_host(w, dtype), placement.device);
}

Tensor place_dense_weight(const Tensor& t, const Placement& placement) {
  GPT2Q_CHECK(t.dtype() == DType::F32 || is_16bit(t.dtype()), "dense weight of {}", dtype_name(t.dtype()));
  const bool convert = placement.device != Device::CPU && placement.compute != DType::F32 &&
                       t.dtype() != placement.compute;
  return to_device(convert ? convert_on_host(t, placement.compute) : t, placement.device);
}

DenseLinear::DenseLinear(Tensor weight, Tensor bias, Placement placement, bool out_in)
    : w_(std::move(weight)), b_(std::move(bias)), out_in_(out_in), placement_(placement) {
  GPT2Q_CHECK(w_.defined() && w_.ndim() == 2 && (w_.dtype() == DType::F32 || is_16bit(w_.dtype())),
              "dense linear: the weight must be a 2-D F32, F16 or BF16 tensor");
  GPT2Q_CHECK(w_.device() == placement_.device, "dense linear: weight on {}, placement on {}",
              device_name(w_.device()), device_name(placement_.device));
  in_ = w_.dim(out_in_ ? 1 : 0);
  out_ = w_.dim(out_in_ ? 0 : 1);
  GPT2Q_CHECK(!b_.defined() || (b_.dtype() == DType::F32 && b_.numel() == out_),
              "dense linear: bias must be F32 [{}]", out_);
  if (cpu_bf16(placement_)) {
    // Converted once; the stored weight (often a view of the file) is let go.
    w_bf16_ = ops::pack_linear_bf16(w_);
    w_ = Tensor();
  }
}

void DenseLinear::forward(const Tensor& x, Tensor& y, ops::Epilogue epilogue) const {
  if (w_bf16_.defined()) return ops::linear_bf16(x, w_bf16_, in_, out_, b_, y, epilogue);
  if (out_in_) return ops::linear_nt(x, w_, b_, y, epilogue);
  ops::linear(x, w_, b_, y, epilogue);
}

std::unique_ptr<DenseLinear> DenseLinear::over_in_out(Tensor weight_in_out, Tensor bias, Placement placement) {
  GPT2Q_CHECK(placement.compute == DType::F32 && weight_in_out.dtype() == DType::F32,
              "dense linear over a [in, out] weight: fp32 only");
  return std::unique_ptr<DenseLinear>(new DenseLinear(std::move(weight_in_out), std::move(bias), placement, false));
}

size_t DenseLinear::bytes() const {
  size_t n = 0;
  for (const Tensor* t : {&w_, &w_bf16_, &b_})
    if (t->defined()) n += t->nbytes();
  return n;
}

std::string DenseLinear::format() const {
  if (w_bf16_.defined()) return "bf16";
  switch (w_.dtype()) {
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    default: return "f32";
  }
}

std::unique_ptr<DenseLinear> make_dense_linear(const Tensor& weight_in_out, const Tensor& bias,
                                               const Placement& placement, const std::string& what) {
  if (!weight_in_out.defined() || weight_in_out.ndim() != 2) fail("{}: weight must be 2-D [in, out]", what);
  if (weight_in_out.dtype() != DType::F32 && !is_16bit(weight_in_out.dtype()))
    fail("{}: weight must be F32, F16 or BF16, got {}", what, dtype_name(weight_in_out.dtype()));
  Tensor b;
  if (bias.defined()) {
    if (bias.numel() != weight_in_out.dim(1))
      fail("{}: bias {} does not match weight {}", what, shape_str(bias.shape()), shape_str(weight_in_out.shape()));
    b = to_device(bias.dtype() == DType::F32 ? bias : convert_on_host(bias, DType::F32), placement.device);
  }
  return std::make_unique<DenseLinear>(place_dense_linear_weight(weight_in_out, placement), std::move(b), placement);
}

}  // namespace gpt2q
