#include "layers/embedding_table.h"

#include "core/error.h"
#include "layers/dense_linear.h"
#include "quant/quant_config.h"
#include "quant/quantized_checkpoint.h"

namespace gpt2q {

EmbeddingTable::EmbeddingTable(Tensor table, Placement placement)
    : dense_(std::move(table)), placement_(placement) {
  GPT2Q_CHECK(dense_.defined() && dense_.ndim() == 2 &&
                  (dense_.dtype() == DType::F32 || dense_.dtype() == DType::F16 || dense_.dtype() == DType::BF16),
              "embedding table: need a 2-D F32, F16 or BF16 tensor");
  GPT2Q_CHECK(dense_.device() == placement_.device, "embedding table: table not on {}", device_name(placement_.device));
  rows_ = dense_.dim(0);
  cols_ = dense_.dim(1);
}

EmbeddingTable::EmbeddingTable(QuantizedTensor table, ops::QuantLinearOptions options, Placement placement)
    : packed_(std::move(table)), options_(options), placement_(placement) {
  GPT2Q_CHECK(packed_.defined() && packed_.device() == placement_.device, "embedding table: table not on {}",
              device_name(placement_.device));
  rows_ = packed_.out();
  cols_ = packed_.in();
}

void EmbeddingTable::gather(const Tensor& idx, Tensor& out, bool accumulate) const {
  if (packed_.defined()) return ops::gather_rows(packed_, idx, out, accumulate);
  ops::gather_rows(dense_, idx, out, accumulate);
}

void EmbeddingTable::gather(const ops::CheckedIndices& idx, Tensor& out, bool accumulate) const {
  if (packed_.defined()) return ops::gather_rows(packed_, idx, out, accumulate);
  ops::gather_rows(dense_, idx, out, accumulate);
}

void EmbeddingTable::matmul_nt(const Tensor& x, Tensor& y) const {
  GPT2Q_CHECK(x.ndim() >= 1 && x.dim(-1) == cols_, "table product: input {} does not have {} features",
              shape_str(x.shape()), cols_);
  const int64_t m = x.numel() / cols_;
  GPT2Q_CHECK(y.numel() == m * rows_, "table product: output {} is not [{}, {}]", shape_str(y.shape()), m, rows_);
  Tensor yv = y.view({m, rows_});
  if (packed_.defined()) return ops::quant_linear(x.view({m, cols_}), packed_, Tensor(), yv, options_);
  ops::matmul_nt(x.view({m, cols_}), dense_, yv);
}

size_t EmbeddingTable::bytes() const { return packed_.defined() ? packed_.bytes() : dense_.nbytes(); }

std::string EmbeddingTable::format() const {
  if (packed_.defined()) return packed_.format_name();
  switch (dense_.dtype()) {
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    default: return "f32";
  }
}

std::unique_ptr<EmbeddingTable> make_f32_table(Tensor t) {
  GPT2Q_CHECK(t.defined() && t.ndim() == 2 && t.dtype() == DType::F32, "f32 table: need a 2-D F32 tensor");
  return std::make_unique<EmbeddingTable>(std::move(t), Placement{});
}

std::unique_ptr<EmbeddingTable> make_16bit_table(Tensor t) {
  GPT2Q_CHECK(t.defined() && t.ndim() == 2 && (t.dtype() == DType::F16 || t.dtype() == DType::BF16),
              "16-bit table: need a 2-D F16 or BF16 tensor");
  return std::make_unique<EmbeddingTable>(std::move(t), Placement{});
}

std::unique_ptr<EmbeddingTable> make_embedding_table(const Checkpoint& ck, const std::string& name, int64_t rows,
                                                     int64_t cols, const Placement& placement) {
  if (ck.quantized_weights.count(name)) {
    const quant::QuantizationConfig cfg = quant::checkpoint_quantization(ck);
    ops::QuantLinearOptions o;
    o.compute = placement.device == Device::CPU ? cfg.compute() : placement.compute;
    o.llm_int8_threshold = cfg.llm_int8_threshold;
    QuantizedTensor q = quant::to_quantized_tensor(quant::read_quantized_weight(ck, cfg, name, rows, cols));
    return std::make_unique<EmbeddingTable>(to_device(q, placement.device), o, placement);
  }
  auto it = ck.tensors.find(name);
  if (it == ck.tensors.end()) fail("{}: missing tensor {}", ck.dir.string(), name);
  const Tensor& t = it->second;
  if (t.shape() != Shape{rows, cols})
    fail("{}: tensor {} has shape {}, the config implies {}", ck.dir.string(), name, shape_str(t.shape()),
         shape_str(Shape{rows, cols}));
  if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16)
    fail("{}: tensor {} has dtype {}; GPT-2 weights must be F32, F16 or BF16", ck.dir.string(), name,
         dtype_name(t.dtype()));
  // A quantized checkpoint copies what it keeps, so that the model holds no
  // view of the file and its mapping (already read through once) is released
  // after loading: what stays resident is the packed model alone.
  Tensor placed = place_dense_weight(t, placement);
  if (ck.quantized() && placed.storage() == t.storage()) placed = placed.clone();
  return std::make_unique<EmbeddingTable>(std::move(placed), placement);
}

void embed_tokens(const EmbeddingTable& wte, const EmbeddingTable& wpe, const Tensor& ids, const Tensor& positions,
                  Tensor& out) {
  if (wte.f32() && wpe.f32()) return ops::embedding(ids, positions, *wte.f32(), *wpe.f32(), out);
  if (ids.dtype() != DType::I32 || positions.dtype() != DType::I64)
    fail("embedding: ids must be I32 and positions I64");
  if (wte.cols() != wpe.cols())
    fail("embedding: tables [{}, {}] and [{}, {}] do not fit", wte.rows(), wte.cols(), wpe.rows(), wpe.cols());
  const int64_t rows = ids.numel(), cols = wte.cols();
  if (positions.numel() != rows) fail("embedding: {} ids but {} positions", rows, positions.numel());
  if (out.dtype() != DType::F32 || out.numel() != rows * cols || out.dim(-1) != cols)
    fail("embedding: output {} should be [{}, {}]", shape_str(out.shape()), rows, cols);
  // The ids' own errors first, as ops::embedding gives them.
  const Tensor id_host = to_device(ids, Device::CPU), pos_host = to_device(positions, Device::CPU);
  const int32_t* id = id_host.data<int32_t>();
  const int64_t* pos = pos_host.data<int64_t>();
  Tensor id64 = Tensor::empty({rows}, DType::I64);
  for (int64_t r = 0; r < rows; ++r) {
    if (id[r] < 0 || id[r] >= wte.rows()) fail("token id {} is out of range for a vocabulary of {}", id[r], wte.rows());
    if (pos[r] < 0 || pos[r] >= wpe.rows())
      fail("position {} is out of range: the model has n_positions = {}", pos[r], wpe.rows());
    id64.data<int64_t>()[r] = id[r];
  }
  wte.gather(id64, out, false);
  wpe.gather(pos_host, out, true);
}

void embed_tokens(const EmbeddingTable& wte, const EmbeddingTable& wpe, const ops::CheckedIndices& ids,
                  const ops::CheckedIndices& positions, Tensor& out) {
  if (wte.cols() != wpe.cols())
    fail("embedding: tables [{}, {}] and [{}, {}] do not fit", wte.rows(), wte.cols(), wpe.rows(), wpe.cols());
  if (positions.size() != ids.size()) fail("embedding: {} ids but {} positions", ids.size(), positions.size());
  wte.gather(ids, out, false);
  wpe.gather(positions, out, true);
}

}  // namespace gpt2q
