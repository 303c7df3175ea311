#pragma once
// Group-wise integer quantization of a linear weight, round-to-nearest and
// GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"), as the GPTQ reference code and
// AutoGPTQ compute it (auto_gptq/quantization/gptq.py `fasterquant`,
// quantizer.py `Quantizer`; docs/quantization.md says where we differ).
//
// The format: W [out, in] (nn.Linear's orientation) with, per group g of
// `group_size` input columns and per output row o, a scale and an integer
// zero point; column i belongs to group g_idx[i]:
//   code  = clamp(round(w / scale) + zero, 0, 2^bits − 1)      (round half to even)
//   value = scale · (code − zero)
// find_params over the group's values x of one row, in fp32:
//   xmin = min(min x, 0), xmax = max(max x, 0)
//   symmetric: xmax = max(|xmin|, xmax), xmin = −xmax when xmin < 0
//   xmin = −1, xmax = 1 when both are 0
//   scale = (xmax − xmin) / (2^bits − 1)
//   zero  = symmetric ? 2^(bits − 1) : max(1, round(−xmin / scale))
// (the reference allows a zero point of 0, for a group whose values are all
// above −scale / 2; the GPTQ checkpoint layout stores zero − 1 unsigned and
// cannot hold it, so gpt2q uses 1 there: such a group loses its top code.)
// GPTQ quantizes the columns in order (or in decreasing order of the
// Hessian's diagonal with act_order) and spreads each column's error over
// the columns not yet quantized through the inverse Hessian's upper Cholesky
// factor, in blocks of `block_size` columns with lazy updates beyond the
// block. The Hessian algebra runs in double (the reference: fp32 on a GPU);
// the quantizer in fp32, as the reference's.
#include <cstdint>
#include <string>
#include <vector>

namespace gpt2q::quant {

struct GroupQuantOptions {
  int bits = 4;              // 2, 3, 4 or 8
  int64_t group_size = 128;  // columns per group; -1: one group per row (per channel)
  bool symmetric = false;
};

struct GptqOptions {
  GroupQuantOptions quant;
  double damp_percent = 0.01;  // damping: this fraction of the Hessian's mean diagonal
  int64_t block_size = 128;    // columns per lazy-update block
  bool act_order = false;      // quantize columns in decreasing Hessian-diagonal order
};

// A weight [out, in] in the group-wise format above.
struct GroupQuantized {
  int bits = 4;
  int64_t out = 0, in = 0;
  int64_t group_size = 0;        // in for per-channel
  bool symmetric = false;
  std::vector<uint8_t> codes;    // [out, in], 0 .. 2^bits − 1
  std::vector<float> scales;     // [groups, out]
  std::vector<int32_t> zeros;    // [groups, out], 0 .. 2^bits − 1 (2^(bits−1) when symmetric)
  std::vector<int32_t> g_idx;    // [in]

  int64_t groups() const { return static_cast<int64_t>(scales.size()) / (out > 0 ? out : 1); }
  int maxq() const { return (1 << bits) - 1; }
  float value(int64_t o, int64_t i) const {
    const int64_t g = g_idx[static_cast<size_t>(i)];
    const float s = scales[static_cast<size_t>(g * out + o)];
    return s * static_cast<float>(static_cast<int32_t>(codes[static_cast<size_t>(o * in + i)]) -
                                  zeros[static_cast<size_t>(g * out + o)]);
  }
  std::vector<float> dequantize() const;  // [out, in]
};

// What GPTQ reports of one matrix.
struct GptqStats {
  double loss = 0;         // Σ (w − q)² / Hinv_ii² / 2, the reference's "avg loss" times its sample count
  double damp = 0;         // the damping added to the diagonal
  int damp_retries = 0;    // times the damping was multiplied by 10 for a Hessian that was not positive definite
  int64_t dead_columns = 0;  // zero diagonal: the input never varied (weights set to 0, as the reference)
  double seconds = 0;
};

// Checks the options (bits 2/3/4/8, group size -1 or 1..in, block size >= 1,
// damping > 0); errors name `what`.
void check_group_options(const GroupQuantOptions& o, int64_t in, const std::string& what);

// Round-to-nearest: every group's parameters from its own values.
GroupQuantized quantize_rtn(const float* w, int64_t out, int64_t in, const GroupQuantOptions& o);

// GPTQ of w [out, in] against hessian [in, in] (symmetric, double; see
// HessianAccumulator). A Hessian that is not positive definite after
// damping gets ten times the damping, up to 6 times (stats.damp_retries),
// then it is an Error naming `what`.
GroupQuantized quantize_gptq(const float* w, int64_t out, int64_t in, const double* hessian, const GptqOptions& o,
                             const std::string& what, GptqStats* stats = nullptr);

// H = 2/N · Σ x·xᵀ over the N rows x [in] of every batch added (GPTQ's
// Hessian of the layer's squared output error; its scale does not change
// GPTQ's result). Accumulated in double.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in);
  void add(const float* x, int64_t rows);  // x [rows, in]
  int64_t rows() const { return rows_; }
  // [in, in]; an Error when nothing was added.
  std::vector<double> hessian() const;

 private:
  int64_t in_ = 0, rows_ = 0;
  std::vector<double> sum_;  // Σ x·xᵀ
};

}  // namespace gpt2q::quant
