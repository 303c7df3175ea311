// The quantized Linear (layers/quant_linear.h): built from GPT-2 Conv1D
// weights (transposed, then quantized, as transformers does before handing
// them to bitsandbytes), run through ops::quant_linear against the formats'
// references, its bytes, its compute dtype, and its errors naming the layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "backend/cpu/dequant_gemm.h"
#include "io/safetensors.h"
#include "layers/quant_linear.h"
#include "ops/reference.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;

namespace {

std::vector<float> normal(int64_t n, float sd, uint32_t seed) { return test::normal_values(n, sd, seed); }

template <typename T>
std::vector<T> to_vector(const Tensor& t) {
  const Tensor h = to_device(t, Device::CPU);
  std::vector<T> v(static_cast<size_t>(h.numel()));
  std::memcpy(v.data(), h.raw(), h.nbytes());
  return v;
}

// y = lin(x), y poisoned with NaN first (must be overwritten).
std::vector<float> run(const Linear& lin, const std::vector<float>& x, int64_t rows) {
  Tensor xt = Tensor::from_vector(x, {rows, lin.in_features()});
  Tensor yt = Tensor::empty({rows, lin.out_features()}, DType::F32);
  for (float& v : yt.span<float>()) v = std::nanf("");
  lin.forward(xt, yt);
  return to_vector<float>(yt);
}

template <typename T>
std::vector<T> fixture_values(const std::string& file, const std::string& key) {
  static std::map<std::string, SafetensorsFile> cache;
  auto it = cache.find(file);
  if (it == cache.end()) it = cache.emplace(file, SafetensorsFile::open(test::fixtures_dir() / "quant" / file)).first;
  return to_vector<T>(it->second.tensors.at(key));
}

// [out, in] values as a Conv1D weight [in, out].
Tensor conv1d_of(const std::vector<float>& w_out_in, int64_t out, int64_t in) {
  Tensor conv = Tensor::empty({in, out}, DType::F32);
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k) conv.data<float>()[k * out + j] = w_out_in[j * in + k];
  return conv;
}

}  // namespace

TEST(QuantLinear, ThreadsOverLargeLayers) {
  // GPT-2 c_attn-sized layer (768 -> 2304): large enough for the OpenMP
  // path, checked against the reference.
  const int64_t in = 768, out = 2304, rows = 3;
  std::vector<float> w = normal(in * out, 0.02f, 12), x = normal(rows * in, 1.0f, 13);
  Tensor conv = Tensor::from_vector(w, {in, out});  // treated as Conv1D [in, out]
  auto lin = QuantLinear::blockwise4_from_conv1d(conv, Tensor(), {Code4::fp4, 64, true}, "h.0.attn.c_attn");
  const std::vector<float> y = run(*lin, x, rows);
  Tensor ref = Tensor::empty({rows, out}, DType::F32);
  ops::reference::quant_linear(Tensor::from_vector(x, {rows, in}), lin->weight(), Tensor(), ref);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref.data<float>()[i], 1e-4f) << i;
  EXPECT_EQ(lin->bytes(), static_cast<size_t>(in * out / 2 + in * out / 64 + 4 * (in * out / 64 / 256) + 4));
  EXPECT_EQ(lin->format(), "fp4-dq");
}

TEST(QuantLinear, Blockwise4Conv1dWeightIsTransposedFirst) {
  const char* file = "blockwise4_cuda.safetensors";
  SafetensorsFile f = SafetensorsFile::open(test::fixtures_dir() / "quant" / file);
  const auto meta = nlohmann::json::parse(f.metadata.at("cases"));
  const auto first = meta.items().begin();
  const std::string name = first.key();
  const int64_t out = first.value()["shape"][0], in = first.value()["shape"][1];
  const int64_t blocksize = first.value()["blocksize"];
  const std::vector<float> w = fixture_values<float>(file, name + ".input");  // [out, in]
  auto lin = QuantLinear::blockwise4_from_conv1d(conv1d_of(w, out, in), Tensor(), {Code4::nf4, blocksize, false},
                                                 "layer");
  EXPECT_EQ(to_vector<uint8_t>(lin->weight().codes), fixture_values<uint8_t>(file, name + ".nf4.packed"));
  EXPECT_EQ(lin->in_features(), in);
  EXPECT_EQ(lin->out_features(), out);
  EXPECT_EQ(lin->format(), "nf4");
}

TEST(QuantLinear, Blockwise4ErrorsNameTheLayer) {
  std::vector<float> w(128, 0.1f);
  w[5] = NAN;
  try {
    QuantLinear::blockwise4_from_conv1d(Tensor::from_vector(w, {64, 2}), Tensor(), {}, "h.0.mlp.c_fc");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("h.0.mlp.c_fc: 4-bit quantization: non-finite weight"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(QuantLinear::blockwise4_from_conv1d(Tensor::empty({4, 4}, DType::F16), Tensor(), {}, "x"), Error);
}

TEST(QuantLinear, LlmInt8FromConv1dAndErrors) {
  const char* file = "llm_int8_cuda.safetensors";
  SafetensorsFile f = SafetensorsFile::open(test::fixtures_dir() / "quant" / file);
  const auto meta = nlohmann::json::parse(f.metadata.at("cases"))["llm_int8"];
  const int64_t out = meta["out"], in = meta["in"];
  const Tensor conv = conv1d_of(fixture_values<float>(file, "weight"), out, in);
  Tensor bias = Tensor::from_vector(fixture_values<float>(file, "bias"), {out});
  auto lin = QuantLinear::llm_int8_from_conv1d(conv, bias, {}, "h.3.attn.c_proj");
  EXPECT_EQ(to_vector<int8_t>(lin->weight().codes), fixture_values<int8_t>(file, "CB"));
  EXPECT_EQ(lin->format(), "llm-int8");
  EXPECT_EQ(lin->bytes(), static_cast<size_t>(out * in + 8 * out + 4 * out));
  const std::vector<float> y = run(*lin, fixture_values<float>(file, "outliers.x"), 5);
  const std::vector<float> ref = fixture_values<float>(file, "outliers.t6.y");  // default threshold 6
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 4e-6f * (1.0f + std::fabs(ref[i])));

  try {
    QuantLinear::llm_int8_from_conv1d(conv, Tensor::empty({out + 1}, DType::F32), {}, "h.3.attn.c_proj");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("h.3.attn.c_proj: bias must be F32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(QuantLinear::llm_int8_from_conv1d(conv, bias, {-1.0f, LlmInt8Epilogue::fp32}, "x"), Error);
}

TEST(QuantLinear, Int8FromConv1dAndErrors) {
  std::vector<float> w_in_out(6 * 4);
  for (size_t i = 0; i < w_in_out.size(); ++i) w_in_out[i] = 0.1f * static_cast<float>(i) - 1.0f;
  Tensor conv = Tensor::from_vector(w_in_out, {6, 4});
  Tensor bias = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {4});
  auto lin = QuantLinear::int8_from_conv1d(conv, bias, Int8Scheme::affine, Int8Granularity::per_channel, "lm");
  EXPECT_EQ(lin->in_features(), 6);
  EXPECT_EQ(lin->out_features(), 4);
  EXPECT_EQ(lin->bytes(), 24u + 16u + 16u + 16u);
  // Row j of the quantized weight is column j of the Conv1D weight.
  std::vector<float> col(6);
  for (int k = 0; k < 6; ++k) col[k] = w_in_out[k * 4 + 2];
  Int8Weight ref = quantize_int8(col.data(), 1, 6, Int8Scheme::affine, Int8Granularity::per_channel);
  const std::vector<int8_t> codes = to_vector<int8_t>(lin->weight().codes);
  EXPECT_TRUE(std::equal(ref.q.begin(), ref.q.end(), codes.begin() + 12));
  const std::vector<float> scales = to_vector<float>(lin->weight().scales);
  const std::vector<float> y = run(*lin, {1, 0, 0, 0, 0, 0}, 1);
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(y[j], w_in_out[j] + static_cast<float>(j + 1), 0.5f * scales[j] + 1e-6f);

  w_in_out[7] = INFINITY;
  try {
    QuantLinear::int8_from_conv1d(Tensor::from_vector(w_in_out, {6, 4}), bias, Int8Scheme::affine,
                                  Int8Granularity::per_tensor, "h.1.mlp.c_proj");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("h.1.mlp.c_proj: int8 quantization: non-finite weight"), std::string::npos)
        << e.what();
  }
}

TEST(QuantLinear, Bf16ComputeChangesTheArithmeticOnlyFromSixteenRows) {
  const int64_t out = 48, in = 128;
  const std::vector<float> w = normal(out * in, 0.02f, 7), b = normal(out, 0.1f, 8);
  const auto lin32 = QuantLinear::blockwise4_from_conv1d(Tensor::from_vector(w, {in, out}),
                                                         Tensor::from_vector(b, {out}), {Code4::nf4, 64, false}, "t");
  const auto lin16 = QuantLinear::blockwise4_from_conv1d(
      Tensor::from_vector(w, {in, out}), Tensor::from_vector(b, {out}), {Code4::nf4, 64, false}, "t", DType::BF16);
  EXPECT_EQ(lin16->compute_dtype(), DType::BF16);
  for (int64_t rows : {int64_t{1}, cpu::kTiledGemmMinRows - 1, cpu::kTiledGemmMinRows}) {
    const std::vector<float> x = normal(rows * in, 1.0f, 9);
    const std::vector<float> y32 = run(*lin32, x, rows), y16 = run(*lin16, x, rows);
    if (rows < cpu::kTiledGemmMinRows)
      EXPECT_EQ(y16, y32) << rows << " rows: the fused fp32 kernel either way";
    else
      EXPECT_NE(y16, y32) << rows << " rows: bf16 rounding must show";
  }
  const auto i8 = QuantLinear::int8_from_conv1d(Tensor::from_vector(w, {in, out}), Tensor::from_vector(b, {out}),
                                                Int8Scheme::affine, Int8Granularity::per_tensor, "t", DType::BF16);
  EXPECT_EQ(i8->compute_dtype(), DType::BF16);
  // F16 arithmetic exists on GPUs only.
  EXPECT_THROW(QuantLinear::int8_from_conv1d(Tensor::from_vector(w, {in, out}), Tensor(), Int8Scheme::affine,
                                             Int8Granularity::per_tensor, "t", DType::F16),
               Error);
}
