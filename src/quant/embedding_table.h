#pragma once
// A [rows, cols] weight table that GPT-2 uses two ways: rows gathered (wte,
// wpe: the embedding lookup) and as the weight of y = x · Tᵀ (the tied LM
// head; lm_head.weight; the classifier's score). The table stays in the form
// the checkpoint stores it, so that the bytes held are the bytes stored:
//   F32          a view of the mapping (the fp32 path of ops/ is used as is)
//   F16 / BF16   16-bit values (a view of the mapping for a plain 16-bit
//                checkpoint, a copy for a quantized one); rows are converted
//                when gathered, and the product converts in registers (few
//                rows) or tiles of rows to fp32 for sgemm (exact conversions;
//                quant/dequant_gemm.h)
//   quantized    int8-tensor / llm-int8 / nf4 / fp4 (quantized_checkpoint.h):
//                gathered rows are the dequantized values; the product runs the
//                format's kernel, from the packed codes
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "io/checkpoint.h"

namespace gpt2q {

class EmbeddingTable {
 public:
  virtual ~EmbeddingTable() = default;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // out[i, :] = T[idx[i], :] (or += with `accumulate`), fp32. idx in [0, rows).
  virtual void gather(const int64_t* idx, int64_t n, float* out, bool accumulate) const = 0;
  // y[m, rows] = x[m, cols] · Tᵀ; x and y fp32, contiguous.
  virtual void matmul_nt(const Tensor& x, Tensor& y) const = 0;
  // Bytes held: values, or codes and quantization state.
  virtual size_t bytes() const = 0;
  virtual std::string format() const = 0;  // "f32", "f16", "bf16", "int8-tensor", "nf4-dq", ...
  // The fp32 tensor when the table is a plain fp32 one, else null.
  virtual const Tensor* f32() const { return nullptr; }

 protected:
  EmbeddingTable(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}

 private:
  int64_t rows_, cols_;
};

// The table `name` of a checkpoint ("wte.weight", "wpe.weight",
// "lm_head.weight", "score.weight"), which must be [rows, cols]: stored
// F32 / F16 / BF16, or quantized. Every table stays in the dtype stored (a
// 16-bit table is not converted to fp32), as views of the mapping for a plain
// checkpoint and copies for a quantized one. Errors name the checkpoint and
// the tensor.
std::unique_ptr<EmbeddingTable> make_embedding_table(const Checkpoint& ck, const std::string& name, int64_t rows,
                                                     int64_t cols);
// An fp32 table over `t` [rows, cols] (shared, not copied).
std::unique_ptr<EmbeddingTable> make_f32_table(Tensor t);
// A table over `t`, F16 or BF16 [rows, cols], kept 16-bit (shared, not copied).
std::unique_ptr<EmbeddingTable> make_16bit_table(Tensor t);

// out[r] = wte[ids[r]] + wpe[positions[r]] (ops::embedding's contract and
// errors; it is what runs when both tables are fp32). ids I32 [rows],
// positions I64 [rows], out F32 [rows, C].
void embed_tokens(const EmbeddingTable& wte, const EmbeddingTable& wpe, const Tensor& ids, const Tensor& positions,
                  Tensor& out);

}  // namespace gpt2q
