#include "quant/embedding_table.h"

#include <fmt/format.h>

#include <cstring>
#include <variant>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/ops.h"
#include "quant/dequant_gemm.h"
#include "quant/half_simd.h"
#include "quant/quantized_checkpoint.h"

// Dequantized values are defined operation by operation (see docs/quantization.md).
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

void check_rows(const char* what, const EmbeddingTable& t, const Tensor& x, const Tensor& y, int64_t* m) {
  GPT2Q_CHECK(x.dtype() == DType::F32 && y.dtype() == DType::F32, "{}: fp32 activations expected", what);
  GPT2Q_CHECK(x.ndim() >= 1 && x.dim(-1) == t.cols(), "{}: input {} does not have {} features", what,
              shape_str(x.shape()), t.cols());
  *m = x.numel() / t.cols();
  GPT2Q_CHECK(y.numel() == *m * t.rows(), "{}: output {} is not [{}, {}]", what, shape_str(y.shape()), *m, t.rows());
}

class F32Table final : public EmbeddingTable {
 public:
  explicit F32Table(Tensor t) : EmbeddingTable(t.dim(0), t.dim(1)), t_(std::move(t)) {}
  void gather(const int64_t* idx, int64_t n, float* out, bool accumulate) const override {
    const float* src = t_.data<float>();
    const int64_t C = cols();
#pragma omp parallel for schedule(static) if (n * C >= cpu::kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
      const float* row = src + idx[i] * C;
      float* o = out + i * C;
      if (accumulate) {
        for (int64_t k = 0; k < C; ++k) o[k] += row[k];
      } else {
        std::memcpy(o, row, sizeof(float) * C);
      }
    }
  }
  void matmul_nt(const Tensor& x, Tensor& y) const override {
    int64_t m = 0;
    check_rows("f32 table", *this, x, y, &m);
    Tensor yv = y.view({m, rows()});
    ops::matmul_nt(x.view({m, cols()}), t_, yv);
  }
  size_t bytes() const override { return t_.nbytes(); }
  std::string format() const override { return "f32"; }
  const Tensor* f32() const override { return &t_; }

 private:
  Tensor t_;
};

using quant::load8_16bit;
using quant::to_float_16bit;

class Table16 final : public EmbeddingTable {
 public:
  explicit Table16(Tensor t) : EmbeddingTable(t.dim(0), t.dim(1)), t_(std::move(t)), bf16_(t_.dtype() == DType::BF16) {}

  void gather(const int64_t* idx, int64_t n, float* out, bool accumulate) const override {
    const uint16_t* src = t_.data<uint16_t>();
    const int64_t C = cols();
#pragma omp parallel for schedule(static) if (n * C >= cpu::kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t* row = src + idx[i] * C;
      float* o = out + i * C;
      for (int64_t k = 0; k < C; ++k) {
        const float v = to_float_16bit(row[k], bf16_);
        o[k] = accumulate ? o[k] + v : v;
      }
    }
  }

  void matmul_nt(const Tensor& x, Tensor& y) const override {
    int64_t m = 0;
    check_rows("16-bit table", *this, x, y, &m);
    if (m <= kFusedMaxRows) {
      fused(x.data<float>(), m, y.data<float>());
    } else {
      blocked(x.data<float>(), m, y.data<float>());
    }
  }
  size_t bytes() const override { return t_.nbytes(); }
  std::string format() const override { return bf16_ ? "bf16" : "f16"; }

 private:
  // Few rows (decoding): read the table once, converting in registers; each
  // output is one fp32 dot product in a fixed order.
  static constexpr int64_t kFusedMaxRows = 4;
  // Many rows: convert tiles of the table to fp32 for sgemm (quant/dequant_gemm.h).

  void fused(const float* x, int64_t m, float* y) const {
    const uint16_t* src = t_.data<uint16_t>();
    const int64_t R = rows(), C = cols(), C8 = C / 8 * 8;
#pragma omp parallel for schedule(static) if (R * C >= cpu::kParallelMinElements)
    for (int64_t j = 0; j < R; ++j) {
      const uint16_t* row = src + j * C;
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * C;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t k = 0; k < C8; k += 8)
          acc = _mm256_fmadd_ps(_mm256_loadu_ps(xi + k), load8_16bit(row + k, bf16_), acc);
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc);
        float s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
        for (int64_t k = C8; k < C; ++k) s += xi[k] * to_float_16bit(row[k], bf16_);
        y[i * R + j] = s;
      }
    }
  }

  void blocked(const float* x, int64_t m, float* y) const {
    const uint16_t* src = t_.data<uint16_t>();
    const int64_t C = cols(), C8 = C / 8 * 8;
    quant::tiled_dequant_gemm(
        x, m, C, rows(), nullptr,
        [&](int64_t j0, int64_t j1, float* dst) {
          for (int64_t j = j0; j < j1; ++j) {
            const uint16_t* row = src + j * C;
            float* d = dst + (j - j0) * C;
            for (int64_t k = 0; k < C8; k += 8) _mm256_storeu_ps(d + k, load8_16bit(row + k, bf16_));
            for (int64_t k = C8; k < C; ++k) d[k] = to_float_16bit(row[k], bf16_);
          }
        },
        y);
  }

  Tensor t_;
  bool bf16_;
};

class QuantizedTable final : public EmbeddingTable {
 public:
  QuantizedTable(quant::QuantizedWeight w, float llm_int8_threshold)
      : EmbeddingTable(quant::quantized_out(w), quant::quantized_in(w)), w_(std::move(w)) {
    llm_.threshold = llm_int8_threshold;
  }

  void gather(const int64_t* idx, int64_t n, float* out, bool accumulate) const override {
    const int64_t C = cols();
#pragma omp parallel for schedule(static) if (n * C >= cpu::kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + i * C;
      const int64_t j = idx[i];
      std::visit(Overloaded{[&](const quant::Int8Weight& w) {
                              const float s = w.scale_of(j);
                              const int32_t zp = w.zero_point_of(j);
                              for (int64_t k = 0; k < C; ++k) {
                                const float v = static_cast<float>(w.q[j * C + k] - zp) * s;
                                o[k] = accumulate ? o[k] + v : v;
                              }
                            },
                            [&](const quant::LlmInt8Weight& w) {
                              for (int64_t k = 0; k < C; ++k) {
                                const float v = quant::llm_int8_dequantized_weight(w, j, k);
                                o[k] = accumulate ? o[k] + v : v;
                              }
                            },
                            [&](const quant::Blockwise4Weight& w) {
                              const auto& table = quant::code4_table(w.type);
                              for (int64_t k = 0; k < C; ++k) {
                                const int64_t e = j * C + k, b = e / w.blocksize;
                                const float absmax = w.nested ? w.nested->absmax(b) : w.absmax[b];
                                const float v = table[w.code(e)] * absmax;
                                o[k] = accumulate ? o[k] + v : v;
                              }
                            }},
                 w_);
    }
  }

  void matmul_nt(const Tensor& x, Tensor& y) const override {
    int64_t m = 0;
    check_rows("quantized table", *this, x, y, &m);
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    std::visit(Overloaded{[&](const quant::Int8Weight& w) { quant::int8_matmul(w, nullptr, xp, m, yp); },
                          [&](const quant::LlmInt8Weight& w) { quant::llm_int8_matmul(w, nullptr, xp, m, llm_, yp); },
                          [&](const quant::Blockwise4Weight& w) { quant::blockwise4_matmul(w, nullptr, xp, m, yp); }},
               w_);
  }
  size_t bytes() const override { return quant::quantized_bytes(w_); }
  std::string format() const override { return quant::quantized_format(w_); }

 private:
  quant::QuantizedWeight w_;
  quant::LlmInt8Options llm_;
};

}  // namespace

std::unique_ptr<EmbeddingTable> make_f32_table(Tensor t) {
  GPT2Q_CHECK(t.defined() && t.ndim() == 2 && t.dtype() == DType::F32, "f32 table: need a 2-D F32 tensor");
  return std::make_unique<F32Table>(std::move(t));
}

std::unique_ptr<EmbeddingTable> make_16bit_table(Tensor t) {
  GPT2Q_CHECK(t.defined() && t.ndim() == 2 && (t.dtype() == DType::F16 || t.dtype() == DType::BF16),
              "16-bit table: need a 2-D F16 or BF16 tensor");
  return std::make_unique<Table16>(std::move(t));
}

std::unique_ptr<EmbeddingTable> make_embedding_table(const Checkpoint& ck, const std::string& name, int64_t rows,
                                                     int64_t cols) {
  if (ck.quantized_weights.count(name)) {
    const quant::QuantizationConfig cfg = quant::checkpoint_quantization(ck);
    return std::make_unique<QuantizedTable>(quant::read_quantized_weight(ck, cfg, name, rows, cols),
                                            cfg.llm_int8_threshold);
  }
  auto it = ck.tensors.find(name);
  if (it == ck.tensors.end()) fail("{}: missing tensor {}", ck.dir.string(), name);
  const Tensor& t = it->second;
  if (t.shape() != Shape{rows, cols})
    fail("{}: tensor {} has shape {}, the config implies {}", ck.dir.string(), name, shape_str(t.shape()),
         shape_str(Shape{rows, cols}));
  // A quantized checkpoint copies what it keeps, so that the model holds no
  // view of the file and its mapping (already read through once) is released
  // after loading: what stays resident is the packed model alone.
  switch (t.dtype()) {
    case DType::F32:
      return std::make_unique<F32Table>(ck.quantized() ? t.clone() : t);
    case DType::F16:
    case DType::BF16:
      return std::make_unique<Table16>(ck.quantized() ? t.clone() : t);
    default:
      fail("{}: tensor {} has dtype {}; GPT-2 weights must be F32, F16 or BF16", ck.dir.string(), name,
           dtype_name(t.dtype()));
  }
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
  const int32_t* id = ids.data<int32_t>();
  const int64_t* pos = positions.data<int64_t>();
  std::vector<int64_t> id64(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    if (id[r] < 0 || id[r] >= wte.rows()) fail("token id {} is out of range for a vocabulary of {}", id[r], wte.rows());
    if (pos[r] < 0 || pos[r] >= wpe.rows())
      fail("position {} is out of range: the model has n_positions = {}", pos[r], wpe.rows());
    id64[r] = id[r];
  }
  wte.gather(id64.data(), rows, out.data<float>(), false);
  wpe.gather(pos, rows, out.data<float>(), true);
}

}  // namespace gpt2q
