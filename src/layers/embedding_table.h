#pragma once
// A [rows, cols] weight table that GPT-2 uses two ways: rows gathered (wte,
// wpe: the embedding lookup) and as the weight of y = x · Tᵀ (the tied LM
// head; lm_head.weight; the classifier's score). The table stays in the form
// the checkpoint stores it, so that the bytes held are the bytes stored:
//   F32          a view of the mapping on the CPU
//   F16 / BF16   16-bit values (a view of the mapping for a plain 16-bit
//                checkpoint, a copy for a quantized one); gathered rows and
//                products convert exactly (backend/cpu/half_gemm.h)
//   quantized    int8-tensor / llm-int8 / nf4 / fp4 (ops/quantized_tensor.h):
//                gathered rows are the dequantized values; the product runs
//                the format's kernel, from the packed codes
// On CUDA with an F16 / BF16 placement a dense table is held in that dtype
// (dense_linear.h's place_dense_weight). Like a Linear, a table only calls
// ops.
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "io/checkpoint.h"
#include "layers/placement.h"
#include "ops/ops.h"

namespace gpt2q {

class EmbeddingTable {
 public:
  // A dense table (F32, F16 or BF16 [rows, cols]) on the placement's device.
  EmbeddingTable(Tensor table, Placement placement);
  // A packed table ([out = rows, in = cols]) on the placement's device.
  EmbeddingTable(QuantizedTensor table, ops::QuantLinearOptions options, Placement placement);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // out[i, :] = T[idx[i], :] (or += with `accumulate`), fp32: idx I64 [n],
  // each in [0, rows) (an Error otherwise), out F32 [n, cols] on the
  // table's device.
  void gather(const Tensor& idx, Tensor& out, bool accumulate) const;
  // The same with indices checked and on the table's device (no host work).
  void gather(const ops::CheckedIndices& idx, Tensor& out, bool accumulate) const;
  // y[m, rows] = x[m, cols] · Tᵀ; x of the placement's activation dtype, y
  // F32 or of that dtype, contiguous.
  void matmul_nt(const Tensor& x, Tensor& y) const;
  // Bytes held: values, or codes and quantization state.
  size_t bytes() const;
  std::string format() const;  // "f32", "f16", "bf16", "int8-tensor", "nf4-dq", ...
  // The dense table, or null when packed.
  const Tensor* dense() const { return packed_.defined() ? nullptr : &dense_; }
  // The fp32 table when the table is a plain fp32 one, else null.
  const Tensor* f32() const { return dense() && dense_.dtype() == DType::F32 ? &dense_ : nullptr; }
  const Placement& placement() const { return placement_; }

 private:
  int64_t rows_ = 0, cols_ = 0;
  Tensor dense_;
  QuantizedTensor packed_;
  ops::QuantLinearOptions options_;
  Placement placement_;
};

// The table `name` of a checkpoint ("wte.weight", "wpe.weight",
// "lm_head.weight", "score.weight"), which must be [rows, cols]: stored
// F32 / F16 / BF16, or quantized, for `placement`. Every table stays in the
// dtype stored on the CPU (a 16-bit table is not converted to fp32), as views
// of the mapping for a plain checkpoint and copies for a quantized one.
// Errors name the checkpoint and the tensor.
std::unique_ptr<EmbeddingTable> make_embedding_table(const Checkpoint& ck, const std::string& name, int64_t rows,
                                                     int64_t cols, const Placement& placement = {});
// An fp32 table over `t` [rows, cols] (shared, not copied), on the CPU.
std::unique_ptr<EmbeddingTable> make_f32_table(Tensor t);
// A table over `t`, F16 or BF16 [rows, cols], kept 16-bit (shared, not copied), on the CPU.
std::unique_ptr<EmbeddingTable> make_16bit_table(Tensor t);

// out[r] = wte[ids[r]] + wpe[positions[r]] (ops::embedding's contract and
// errors; it is what runs when both tables are fp32). ids I32 [rows],
// positions I64 [rows], out F32 [rows, C], all on the tables' device.
void embed_tokens(const EmbeddingTable& wte, const EmbeddingTable& wpe, const Tensor& ids, const Tensor& positions,
                  Tensor& out);
// The same with ids and positions checked against the tables and on their
// device: out = wte[ids] then += wpe[positions], in fp32 (the sum that
// ops::embedding computes), with no host work.
void embed_tokens(const EmbeddingTable& wte, const EmbeddingTable& wpe, const ops::CheckedIndices& ids,
                  const ops::CheckedIndices& positions, Tensor& out);

}  // namespace gpt2q
