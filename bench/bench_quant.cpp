// Packed Linears against the fp32 ops::linear baseline, on the GPT-2 124M
// projection shapes, and the quantize / dequantize throughput of each format.
// Linears: bytes = the weight (and quantization state) the layer holds, read
// once per forward (Linear::bytes(); fp32: in·out·4), items = FLOPs
// (2·rows·in·out), so bytes_per_second is weight bandwidth and
// items_per_second FLOP/s. Quantize / dequantize: items = weights, bytes =
// their fp32 size (read by quantize, written by dequantize).
#include <memory>
#include <vector>

#include "bench_common.h"
#include "core/half.h"
#include "layers/dense_linear.h"
#include "layers/quant_linear.h"
#include "ops/ops.h"
#include "quant/blockwise4.h"
#include "quant/double_quant.h"
#include "quant/int8_affine.h"
#include "quant/llm_int8.h"

namespace gpt2q::bench {
namespace {

using namespace gpt2q::quant;

// Conv1D weight [in, out] at GPT-2's initialisation scale (std 0.02).
Tensor conv1d_weight(int64_t in, int64_t out) { return synthetic_tensor("bench.weight", {in, out}, 0.035f); }
Tensor conv1d_bias(int64_t out) { return synthetic_tensor("bench.bias", {out}, 0.02f); }

// Activations [rows, in] in [-1, 1); with outliers, every 96th column is 8
// (> llm-int8's threshold 6), as the few large hidden dimensions of GPT-2.
std::vector<float> activations(int64_t rows, int64_t in, bool outliers) {
  std::vector<float> x = synthetic("bench.x", rows * in, 1.0f);
  if (outliers)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < in; k += 96) x[r * in + k] = 8.0f;
  return x;
}

void run_linear(benchmark::State& state, const Linear& lin, bool outliers) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  const Tensor x = Tensor::from_vector(activations(rows, in, outliers), {rows, in});
  Tensor y = ops::scratch({rows, out});
  for (auto _ : state) {
    lin.forward(x, y);
    benchmark::DoNotOptimize(y.raw());
    benchmark::ClobberMemory();
  }
  set_rates(state, static_cast<int64_t>(lin.bytes()), 2 * rows * in * out);
}

void BM_LinearF32(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  const Tensor w = conv1d_weight(in, out), b = conv1d_bias(out);
  const Tensor x = Tensor::from_vector(activations(rows, in, false), {rows, in});
  Tensor y = ops::scratch({rows, out});
  for (auto _ : state) {
    ops::linear(x, w, b, y);
    benchmark::DoNotOptimize(y.raw());
    benchmark::ClobberMemory();
  }
  set_rates(state, static_cast<int64_t>(w.nbytes() + b.nbytes()), 2 * rows * in * out);
}
BENCHMARK(BM_LinearF32)->Apply(gpt2_linear_shapes);

void BM_LinearF16(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1);
  const Tensor w = conv1d_weight(in, out), b = conv1d_bias(out);
  Tensor w16 = Tensor::empty({in, out}, DType::F16);
  for (int64_t i = 0; i < w.numel(); ++i) w16.data<uint16_t>()[i] = float_to_half(w.data<float>()[i]);
  const DenseLinear lin(w16, b, Placement{});
  run_linear(state, lin, false);
}
BENCHMARK(BM_LinearF16)->Apply(gpt2_linear_shapes);

template <Int8Granularity G, DType Compute = DType::F32>
void BM_LinearInt8(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1);
  const auto lin = QuantLinear::int8_from_conv1d(conv1d_weight(in, out), conv1d_bias(out), Int8Scheme::affine, G,
                                                 "bench", Compute);
  run_linear(state, *lin, false);
}
BENCHMARK(BM_LinearInt8<Int8Granularity::per_tensor>)->Name("BM_LinearInt8Tensor")->Apply(gpt2_linear_shapes);
BENCHMARK(BM_LinearInt8<Int8Granularity::per_channel>)->Name("BM_LinearInt8Channel")->Apply(gpt2_linear_shapes);
// compute dtype bf16 (from 16 rows; below it the same fused kernel as fp32).
BENCHMARK(BM_LinearInt8<Int8Granularity::per_tensor, DType::BF16>)
    ->Name("BM_LinearInt8TensorBf16Compute")
    ->Apply(gpt2_linear_shapes);

// threshold 6 with 8 outlier columns of 768 (every 96th; 32 of 3072), and 0
// (no decomposition: the plain int8 product).
void BM_LinearLlmInt8(benchmark::State& state, float threshold, bool outliers) {
  const int64_t in = state.range(0), out = state.range(1);
  LlmInt8Options opt;
  opt.threshold = threshold;
  const auto lin = QuantLinear::llm_int8_from_conv1d(conv1d_weight(in, out), conv1d_bias(out), opt, "bench");
  run_linear(state, *lin, outliers);
}
BENCHMARK_CAPTURE(BM_LinearLlmInt8, t6_outliers, 6.0f, true)->Apply(gpt2_linear_shapes);
BENCHMARK_CAPTURE(BM_LinearLlmInt8, t0, 0.0f, false)->Apply(gpt2_linear_shapes);

void BM_Linear4bit(benchmark::State& state, Code4 type, bool double_quant, DType compute = DType::F32) {
  const int64_t in = state.range(0), out = state.range(1);
  const auto lin = QuantLinear::blockwise4_from_conv1d(conv1d_weight(in, out), conv1d_bias(out),
                                                 {type, 64, double_quant}, "bench", compute);
  run_linear(state, *lin, false);
}
BENCHMARK_CAPTURE(BM_Linear4bit, nf4, Code4::nf4, false)->Apply(gpt2_linear_shapes);
BENCHMARK_CAPTURE(BM_Linear4bit, fp4, Code4::fp4, false)->Apply(gpt2_linear_shapes);
BENCHMARK_CAPTURE(BM_Linear4bit, nf4_dq, Code4::nf4, true)->Apply(gpt2_linear_shapes);
BENCHMARK_CAPTURE(BM_Linear4bit, nf4_bf16_compute, Code4::nf4, false, DType::BF16)->Apply(gpt2_linear_shapes);

// --- quantize / dequantize of one c_fc weight (3072 x 768 = 2.36 M values) ---

constexpr int64_t kOut = 3072, kIn = 768, kN = kOut * kIn;

const std::vector<float>& weight_out_in() {
  static const std::vector<float> w = synthetic("bench.weight", kN, 0.035f);
  return w;
}

void quant_rates(benchmark::State& state) { set_rates(state, kN * static_cast<int64_t>(sizeof(float)), kN); }

void BM_QuantizeInt8(benchmark::State& state, Int8Granularity g) {
  const float* w = weight_out_in().data();  // built before the timed loop
  for (auto _ : state) benchmark::DoNotOptimize(quantize_int8(w, kOut, kIn, Int8Scheme::affine, g));
  quant_rates(state);
}
BENCHMARK_CAPTURE(BM_QuantizeInt8, tensor, Int8Granularity::per_tensor);
BENCHMARK_CAPTURE(BM_QuantizeInt8, channel, Int8Granularity::per_channel);

void BM_DequantizeInt8(benchmark::State& state, Int8Granularity g) {
  const Int8Weight q = quantize_int8(weight_out_in().data(), kOut, kIn, Int8Scheme::affine, g);
  std::vector<float> w(kN);
  for (auto _ : state) {
    dequantize_int8(q, w.data());
    benchmark::DoNotOptimize(w.data());
    benchmark::ClobberMemory();
  }
  quant_rates(state);
}
BENCHMARK_CAPTURE(BM_DequantizeInt8, tensor, Int8Granularity::per_tensor);
BENCHMARK_CAPTURE(BM_DequantizeInt8, channel, Int8Granularity::per_channel);

void BM_QuantizeLlmInt8(benchmark::State& state) {
  const float* w = weight_out_in().data();
  for (auto _ : state) benchmark::DoNotOptimize(quantize_llm_int8(w, kOut, kIn));
  quant_rates(state);
}
BENCHMARK(BM_QuantizeLlmInt8);

// LLM.int8's per-call activation quantization: 128 rows x 768, threshold 6.
void BM_QuantizeRowsLlmInt8(benchmark::State& state) {
  const std::vector<float> x = activations(128, kIn, true);
  for (auto _ : state) benchmark::DoNotOptimize(quantize_rows_int8(x.data(), 128, kIn, 6.0f));
  set_rates(state, 128 * kIn * static_cast<int64_t>(sizeof(float)), 128 * kIn);
}
BENCHMARK(BM_QuantizeRowsLlmInt8);

void BM_Quantize4bit(benchmark::State& state, Code4 type, bool double_quant) {
  const float* w = weight_out_in().data();
  for (auto _ : state) benchmark::DoNotOptimize(quantize_4bit(w, kOut, kIn, {type, 64, double_quant}));
  quant_rates(state);
}
BENCHMARK_CAPTURE(BM_Quantize4bit, nf4, Code4::nf4, false);
BENCHMARK_CAPTURE(BM_Quantize4bit, fp4, Code4::fp4, false);
BENCHMARK_CAPTURE(BM_Quantize4bit, nf4_dq, Code4::nf4, true);

void BM_Dequantize4bit(benchmark::State& state, Code4 type, bool double_quant) {
  const Blockwise4Weight q = quantize_4bit(weight_out_in().data(), kOut, kIn, {type, 64, double_quant});
  std::vector<float> w(kN);
  for (auto _ : state) {
    dequantize_4bit(q, w.data());
    benchmark::DoNotOptimize(w.data());
    benchmark::ClobberMemory();
  }
  quant_rates(state);
}
BENCHMARK_CAPTURE(BM_Dequantize4bit, nf4, Code4::nf4, false);
BENCHMARK_CAPTURE(BM_Dequantize4bit, fp4, Code4::fp4, false);
BENCHMARK_CAPTURE(BM_Dequantize4bit, nf4_dq, Code4::nf4, true);

// Double quantization of the block absmax of that weight (36864 values).
std::vector<float> block_absmax() {
  return quantize_4bit(weight_out_in().data(), kOut, kIn, {Code4::nf4, 64, false}).absmax;
}

void BM_DoubleQuantize(benchmark::State& state) {
  const std::vector<float> absmax = block_absmax();
  const auto n = static_cast<int64_t>(absmax.size());
  for (auto _ : state) benchmark::DoNotOptimize(double_quantize(absmax.data(), n));
  set_rates(state, n * static_cast<int64_t>(sizeof(float)), n);
}
BENCHMARK(BM_DoubleQuantize);

void BM_DoubleDequantize(benchmark::State& state) {
  const std::vector<float> absmax = block_absmax();
  const auto n = static_cast<int64_t>(absmax.size());
  const DoubleQuantAbsmax d = double_quantize(absmax.data(), n);
  std::vector<float> out(absmax.size());
  for (auto _ : state) {
    double_dequantize(d, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, n * static_cast<int64_t>(sizeof(float)), n);
}
BENCHMARK(BM_DoubleDequantize);

}  // namespace
}  // namespace gpt2q::bench
