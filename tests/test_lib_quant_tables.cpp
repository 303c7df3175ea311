// Embedding / head tables kept as a quantized checkpoint stores them: 16-bit
// and quantized rows gathered exactly, products against a double-precision
// reference (both the in-register path for few rows and the blocked sgemm
// path), and the bytes held.
#include <cmath>

#include "core/half.h"
#include "layers/embedding_table.h"
#include "quant/quant_config.h"
#include "test_lib_quant_support.h"

using namespace gpt2q;
using namespace gpt2q::test;

namespace {

constexpr int64_t kRows = 2100, kCols = 37;  // sgemm path: 10 tiles of 192 rows + a partial one; cols % 8 != 0

float value(int64_t i) { return synthetic_value("table", 3, static_cast<uint64_t>(i)) * 0.5f; }

Checkpoint table_checkpoint(const std::string& name, Tensor t, bool quantized) {
  Checkpoint ck;
  ck.dir = "in-memory";
  if (quantized) ck.quantization_config = quant::QuantizationConfig{}.to_json();
  ck.tensors[name] = std::move(t);
  ck.source[name] = "in-memory";
  return ck;
}

Tensor sixteen_bit(DType dtype) {
  Tensor t = Tensor::empty({kRows, kCols}, dtype);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<uint16_t>()[i] = dtype == DType::F16 ? float_to_half(value(i)) : float_to_bf16(value(i));
  return t;
}

std::vector<float> activations(int64_t m) {
  std::vector<float> x(static_cast<size_t>(m * kCols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = synthetic_value("x", 9, i);
  return x;
}

// y = x · Tᵀ against Σ in double from the table's exact fp32 values.
void expect_product(const EmbeddingTable& table, const std::vector<float>& t_f32) {
  for (int64_t m : {1, 3, 4, 5, 17}) {
    const std::vector<float> x = activations(m);
    Tensor y = Tensor::empty({m, kRows}, DType::F32);
    table.matmul_nt(Tensor::from_vector(x, {m, kCols}), y);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < kRows; ++j) {
        double s = 0, mag = 0;
        for (int64_t k = 0; k < kCols; ++k) {
          s += static_cast<double>(x[i * kCols + k]) * t_f32[j * kCols + k];
          mag += std::abs(static_cast<double>(x[i * kCols + k]) * t_f32[j * kCols + k]);
        }
        ASSERT_NEAR(y.data<float>()[i * kRows + j], s, 1e-6 * mag + 1e-30) << "m " << m << " row " << j;
      }
  }
}

// Rows idx of the table into out (fp32 [n, kCols]), or added to it.
void gather(const EmbeddingTable& table, const std::vector<int64_t>& idx, std::vector<float>& out, bool accumulate) {
  const auto n = static_cast<int64_t>(idx.size());
  Tensor o = Tensor::from_vector(out, {n, kCols});
  table.gather(Tensor::from_vector(idx, {n}), o, accumulate);
  out.assign(o.data<float>(), o.data<float>() + o.numel());
}

void expect_gather(const EmbeddingTable& table, const std::vector<float>& t_f32) {
  const std::vector<int64_t> idx = {0, 2099, 1024, 7, 7, 1500};
  std::vector<float> out(idx.size() * kCols, 0.0f);
  gather(table, idx, out, false);
  for (size_t i = 0; i < idx.size(); ++i)
    for (int64_t k = 0; k < kCols; ++k) ASSERT_EQ(out[i * kCols + k], t_f32[idx[i] * kCols + k]);
  std::vector<float> acc(out.size(), 0.25f);
  gather(table, idx, acc, true);
  for (size_t i = 0; i < acc.size(); ++i) ASSERT_EQ(acc[i], 0.25f + out[i]);
}

TEST(EmbeddingTable, SixteenBitTablesOfAQuantizedCheckpointStaySixteenBit) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    const Tensor t = sixteen_bit(dtype);
    const Tensor exact = to_f32(t);
    const std::vector<float> t_f32(exact.data<float>(), exact.data<float>() + exact.numel());
    auto table = make_embedding_table(table_checkpoint("wte.weight", t, true), "wte.weight", kRows, kCols);
    EXPECT_EQ(table->format(), dtype == DType::F16 ? "f16" : "bf16");
    EXPECT_EQ(table->bytes(), static_cast<size_t>(kRows * kCols * 2));
    EXPECT_EQ(table->f32(), nullptr);
    expect_gather(*table, t_f32);
    expect_product(*table, t_f32);
  }
}

TEST(EmbeddingTable, PlainSixteenBitCheckpointsStaySixteenBitAsViews) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    const Tensor t = sixteen_bit(dtype);
    const Tensor exact = to_f32(t);
    const std::vector<float> t_f32(exact.data<float>(), exact.data<float>() + exact.numel());
    const Checkpoint ck = table_checkpoint("wte.weight", t, false);
    auto table = make_embedding_table(ck, "wte.weight", kRows, kCols);
    EXPECT_EQ(table->format(), dtype == DType::F16 ? "f16" : "bf16");
    EXPECT_EQ(table->bytes(), static_cast<size_t>(kRows * kCols * 2));
    EXPECT_EQ(table->f32(), nullptr);
    expect_gather(*table, t_f32);
    // A view of the checkpoint's tensor (of the mapping, when loaded): writing
    // through the checkpoint shows in the table.
    ck.tensors.at("wte.weight").data<uint16_t>()[0] =
        dtype == DType::F16 ? float_to_half(1000.0f) : float_to_bf16(1000.0f);
    std::vector<float> row(kCols);
    gather(*table, {0}, row, false);
    EXPECT_EQ(row[0], 1000.0f);
  }
}

TEST(EmbeddingTable, QuantizedTablesGatherDequantizedRowsAndRunTheirKernels) {
  std::vector<float> w(static_cast<size_t>(kRows * kCols));
  for (size_t i = 0; i < w.size(); ++i) w[i] = value(static_cast<int64_t>(i));
  quant::QuantizationConfig nf4;
  nf4.method = quant::QuantMethod::nf4;
  nf4.double_quant = true;
  std::vector<std::pair<quant::QuantizationConfig, quant::QuantizedWeight>> cases;
  {
    quant::QuantizationConfig c;
    c.method = quant::QuantMethod::int8_tensor;
    c.int8_granularity = quant::Int8Granularity::per_channel;
    cases.emplace_back(c, quant::quantize_int8(w.data(), kRows, kCols, c.int8_scheme, c.int8_granularity));
  }
  cases.emplace_back(nf4, quant::quantize_4bit(w.data(), kRows, kCols, {quant::Code4::nf4, 32, true}));
  for (auto& [cfg, qw] : cases) {
    Checkpoint ck;
    ck.dir = "in-memory";
    ck.quantization_config = cfg.to_json();
    for (auto& [n, t] : quant::quantized_weight_tensors("wte.weight", qw, "float32")) {
      ck.tensors[n] = t;
      ck.source[n] = "in-memory";
    }
    ck.quantized_weights = {"wte.weight"};
    auto table = make_embedding_table(ck, "wte.weight", kRows, kCols);
    const std::vector<float> deq = dequantize_stored(ck, "wte.weight", kRows, kCols);
    EXPECT_EQ(table->format(), quant::quantized_format(qw));
    EXPECT_EQ(table->bytes(), quant::quantized_bytes(qw));
    expect_gather(*table, deq);
    expect_product(*table, deq);
  }
}

TEST(EmbeddingTable, EmbedTokensChecksIdsAndPositions) {
  const Tensor wte16 = sixteen_bit(DType::F16);
  auto wte = make_embedding_table(table_checkpoint("wte.weight", wte16, true), "wte.weight", kRows, kCols);
  Tensor wpe_t = Tensor::empty({8, kCols}, DType::F32);
  for (int64_t i = 0; i < wpe_t.numel(); ++i) wpe_t.data<float>()[i] = value(i + 7);
  auto wpe = make_f32_table(wpe_t);
  Tensor out = Tensor::empty({2, kCols}, DType::F32);
  Tensor pos = Tensor::from_vector(std::vector<int64_t>{0, 7}, {2});
  embed_tokens(*wte, *wpe, Tensor::from_vector(std::vector<int32_t>{5, 2099}, {2}), pos, out);
  for (int64_t k = 0; k < kCols; ++k) {
    EXPECT_EQ(out.data<float>()[k], half_to_float(wte16.data<uint16_t>()[5 * kCols + k]) + wpe_t.data<float>()[k]);
    EXPECT_EQ(out.data<float>()[kCols + k],
              half_to_float(wte16.data<uint16_t>()[2099 * kCols + k]) + wpe_t.data<float>()[7 * kCols + k]);
  }
  EXPECT_EQ(error_of([&] {
              embed_tokens(*wte, *wpe, Tensor::from_vector(std::vector<int32_t>{5, 2100}, {2}), pos, out);
            }),
            "token id 2100 is out of range for a vocabulary of 2100");
  EXPECT_EQ(error_of([&] {
              embed_tokens(*wte, *wpe, Tensor::from_vector(std::vector<int32_t>{5, 6}, {2}),
                           Tensor::from_vector(std::vector<int64_t>{0, 8}, {2}), out);
            }),
            "position 8 is out of range: the model has n_positions = 8");
}

}  // namespace
