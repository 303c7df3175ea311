#include "model/linear_factory.h"

#include <fmt/format.h>

#include "core/error.h"
#include "quant/blockwise4_linear.h"
#include "quant/embedding_table.h"
#include "quant/int8_affine_linear.h"
#include "quant/llm_int8_linear.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const Tensor& checked(const Checkpoint& ck, const std::string& name, const Shape& shape) {
  const Tensor& t = ck.get(name);
  if (t.shape() != shape)
    fail("{}: tensor '{}' has shape {}, the config implies {}", ck.dir.string(), name, shape_str(t.shape()),
         shape_str(shape));
  return t;
}

std::vector<float> bias_values(const Checkpoint& ck, const std::string& name, int64_t out) {
  Tensor b = to_f32(checked(ck, name, {out}));
  const float* p = b.data<float>();
  return std::vector<float>(p, p + out);
}

std::unique_ptr<Linear> make_quantized_linear(const Checkpoint& ck, const std::string& module, const Shape& in_out) {
  const quant::QuantizationConfig cfg = quant::checkpoint_quantization(ck);
  const std::string W = module + ".weight";
  const int64_t in = in_out[0], out = in_out[1];
  quant::QuantizedWeight qw = quant::read_quantized_weight(ck, cfg, W, out, in);
  std::vector<float> bias = bias_values(ck, module + ".bias", out);
  switch (cfg.method) {
    case quant::QuantMethod::int8_tensor:
      return std::make_unique<quant::Int8AffineLinear>(std::get<quant::Int8Weight>(std::move(qw)), std::move(bias));
    case quant::QuantMethod::llm_int8: {
      quant::LlmInt8Options opt;
      opt.threshold = cfg.llm_int8_threshold;
      return std::make_unique<quant::LlmInt8Linear>(std::get<quant::LlmInt8Weight>(std::move(qw)), std::move(bias),
                                                    opt);
    }
    case quant::QuantMethod::nf4:
    case quant::QuantMethod::fp4:
      return std::make_unique<quant::Blockwise4Linear>(std::get<quant::Blockwise4Weight>(std::move(qw)),
                                                       std::move(bias));
  }
  GPT2Q_CHECK(false, "unknown quantization method");
}

// A block projection kept 16-bit in a quantized checkpoint (a layer left out
// of the quantization): the Conv1D weight [in, out] is transposed once into a
// 16-bit [out, in] table, which holds as many bytes as the file stores.
class SixteenBitLinear final : public Linear {
 public:
  SixteenBitLinear(const Tensor& w_in_out, std::vector<float> bias) : bias_(std::move(bias)) {
    const int64_t in = w_in_out.dim(0), out = w_in_out.dim(1);
    Tensor t = Tensor::empty({out, in}, w_in_out.dtype());
    const uint16_t* src = w_in_out.data<uint16_t>();
    uint16_t* dst = t.data<uint16_t>();
    for (int64_t k = 0; k < in; ++k)
      for (int64_t j = 0; j < out; ++j) dst[j * in + k] = src[k * out + j];
    w_ = make_16bit_table(std::move(t));
  }
  int64_t in_features() const override { return w_->cols(); }
  int64_t out_features() const override { return w_->rows(); }
  void forward(const float* x, int64_t rows, float* y) const override {
    if (rows == 0) return;
    const int64_t in = in_features(), out = out_features();
    // Views of the caller's buffers (the Linear interface passes raw pointers).
    const Tensor xt = Tensor::from_storage(Storage::borrow(const_cast<float*>(x), sizeof(float) * rows * in, nullptr),
                                           0, {rows, in}, DType::F32);
    Tensor yt =
        Tensor::from_storage(Storage::borrow(y, sizeof(float) * rows * out, nullptr), 0, {rows, out}, DType::F32);
    w_->matmul_nt(xt, yt);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < out; ++j) y[i * out + j] += bias_[j];
  }
  size_t bytes() const override { return w_->bytes() + bias_.size() * sizeof(float); }
  std::string format() const override { return w_->format(); }

 private:
  std::unique_ptr<EmbeddingTable> w_;
  std::vector<float> bias_;
};

}  // namespace

Shape block_linear_shape(const GPT2Config& c, const std::string& module) {
  const int64_t C = c.n_embd, I = c.inner();
  if (ends_with(module, ".attn.c_attn")) return {C, 3 * C};
  if (ends_with(module, ".attn.c_proj")) return {C, C};
  if (ends_with(module, ".mlp.c_fc")) return {C, I};
  if (ends_with(module, ".mlp.c_proj")) return {I, C};
  fail("'{}' is not a GPT-2 block projection (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)", module);
}

std::unique_ptr<Linear> make_linear(const Checkpoint& ck, const std::string& module) {
  const Shape in_out = block_linear_shape(ck.config, module);
  const std::string W = module + ".weight";
  if (ck.quantized_weights.count(W)) return make_quantized_linear(ck, module, in_out);
  const Tensor& w = checked(ck, W, in_out);
  // A quantized checkpoint is about memory: its unquantized 16-bit layers stay 16-bit.
  if (ck.quantized() && (w.dtype() == DType::F16 || w.dtype() == DType::BF16))
    return std::make_unique<SixteenBitLinear>(w, bias_values(ck, module + ".bias", in_out[1]));
  Tensor w32 = to_f32(w), b32 = to_f32(checked(ck, module + ".bias", {in_out[1]}));
  // As embedding_table.cpp: a quantized model keeps no view of its file.
  if (ck.quantized()) {
    if (w32.storage() == w.storage()) w32 = w32.clone();
    b32 = b32.clone();
  }
  return make_dense_linear(std::move(w32), std::move(b32));
}

}  // namespace gpt2q
