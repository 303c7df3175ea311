// Every op the model runs, on CUDA against the CPU (ggml's test-backend-ops):
// the same inputs through ops:: on CUDA tensors and on CPU tensors, in every
// dtype the GPU path uses. The tolerances, and why:
//   - exact (bit for bit): gathers, casts, decodes, LLM.int8() (every step
//     but the exact int32 sums is the CPU's operation sequence)
//   - fp32 products: 1e-5 of |want| + mean |want| (the CPU kernels' own
//     tolerance: only the summation order differs)
//   - 16-bit operands: the CPU runs fp32 on the same 16-bit-rounded values,
//     so the difference is the output's rounding plus fp32 summation order:
//     4 ulp of the output type relative to |want| + mean |want| (f16 2^-9,
//     bf16 2^-6)
// Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cuda/gemm.h"
#include "core/device_memory.h"
#include "core/half.h"
#include "ops/ops.h"
#include "ops/reference.h"
#include "quant/quantized_checkpoint.h"
#include "support/test_env.h"

using namespace gpt2q;

namespace {

class CudaBackendOps : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda_device_usable(&why)) GTEST_SKIP() << "no usable CUDA device (" << why << "): CUDA tests not run";
  }
};

Tensor gpu(const Tensor& t) { return to_device(t, Device::CUDA); }
Tensor host(const Tensor& t) { return to_device(t, Device::CPU); }

Tensor normal(Shape shape, float sd, uint32_t seed) {
  const int64_t n = shape_numel(shape);
  return Tensor::from_vector(test::normal_values(n, sd, seed), std::move(shape));
}

// t (F32, host) as `dtype`, rounded to nearest even.
Tensor as(const Tensor& t, DType dtype) {
  Tensor out = Tensor::empty(t.shape(), dtype);
  ops::cast(t, out);
  return out;
}
// A host fp32 copy of any float tensor (exact widening).
Tensor f32(const Tensor& t) { return as(host(t), DType::F32); }

// A device output poisoned with NaN (every element must be written).
Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, DType::F32);
  for (float& v : t.span<float>()) v = NAN;
  return gpu(as(t, dtype));
}

double ulp_tolerance(DType dtype) {
  switch (dtype) {
    case DType::F16: return 4 * std::ldexp(1.0, -11);
    case DType::BF16: return 4 * std::ldexp(1.0, -8);
    default: return 1e-5;
  }
}

void expect_close(const Tensor& got, const Tensor& want, DType dtype, const std::string& what) {
  const double worst = test::expect_close(f32(got), f32(want), ulp_tolerance(dtype), what);
  std::printf("  %-58s worst rel. error %.3g\n", what.c_str(), worst);
}

void expect_same_bits(const Tensor& got_any, const Tensor& want, const std::string& what) {
  const Tensor got = host(got_any);
  ASSERT_EQ(got.nbytes(), want.nbytes()) << what;
  size_t diff = 0;
  for (size_t i = 0; i < want.nbytes(); ++i)
    diff += static_cast<const uint8_t*>(got.raw())[i] != static_cast<const uint8_t*>(want.raw())[i];
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " bytes differ";
}

const char* name(DType t) { return dtype_name(t).data(); }

}  // namespace

// w [in, out] (F32, on the host) as [out, in].
Tensor transposed(const Tensor& w) {
  const int64_t in = w.dim(0), out = w.dim(1);
  Tensor t = Tensor::empty({out, in}, DType::F32);
  for (int64_t k = 0; k < in; ++k)
    for (int64_t j = 0; j < out; ++j) t.data<float>()[j * in + k] = w.data<float>()[k * out + j];
  return t;
}

// Dense products in every dtype the GPU runs, with each epilogue, with the
// weight [in, out] (ops::linear) and [out, in] (ops::linear_nt, as the CUDA
// dense layers hold it).
TEST_F(CudaBackendOps, LinearEveryDtypeAndEpilogue) {
  struct Shape3 {
    int64_t rows, in, out;
  };
  // With [out, in] weights, rows 1..8 of 16-bit operands with in % 8 == 0
  // run dense_gemv: 1 x 768 x 2304 (4 chunks per lane), 3 x 3072 x 768
  // (several steps), 8 x 40 x 24 (a part of a warp's step), 2 x 64 x 8193
  // (4 outputs per warp, the last warp's partly past the end); the rest,
  // and every [in, out] product, cuBLASLt.
  // 1500 and 2000 rows share cuBLASLt's plan for the bucket of 2048 rows
  // (gemm_lt.cpp).
  for (const Shape3 s : {Shape3{1, 768, 2304}, {3, 3072, 768}, {8, 40, 24}, {2, 64, 8193}, {51, 768, 3072},
                         {7, 33, 17}, {130, 3072, 768}, {1500, 256, 384}, {2000, 256, 384}})
    for (DType dt : {DType::F32, DType::F16, DType::BF16})
      for (bool nt : {false, true})
        for (int epi = 0; epi < 5; ++epi) {
          // 0 plain + bias, 1 gelu_new, 2 gelu_erf, 3 accumulate into an F32 y,
          // 4 plain with an F32 bias (what the layers hold) into y of dt
          ops::Epilogue e;
          if (epi == 1) e.activation = ops::Activation::gelu_new;
          if (epi == 2) e.activation = ops::Activation::gelu_erf;
          if (epi == 3) e.accumulate = true;
          const DType ydt = epi == 3 ? DType::F32 : dt;
          const Tensor x = as(normal({s.rows, s.in}, 1.0f, 1), dt), w = as(normal({s.in, s.out}, 0.05f, 2), dt);
          const Tensor b = as(normal({s.out}, 0.1f, 3), dt == DType::F32 || epi == 4 ? DType::F32 : dt);
          const Tensor y0 = normal({s.rows, s.out}, 1.0f, 4);
          // CPU: fp32 on the same (rounded) values.
          Tensor want = y0.clone();
          ops::linear(f32(x), f32(w), f32(b), want, e);
          Tensor got = epi == 3 ? gpu(y0) : poisoned({s.rows, s.out}, ydt);
          if (nt) ops::linear_nt(gpu(x), gpu(as(transposed(f32(w)), dt)), gpu(b), got, e);
          else ops::linear(gpu(x), gpu(w), gpu(b), got, e);
          const std::string what = fmt::format("linear{} {} {}x{}x{} epilogue {}", nt ? "_nt" : "", name(dt),
                                               s.rows, s.in, s.out, epi);
          if (ydt == DType::F32) {
            // fp32 sums in another order: the error grows like sqrt(k). 1e-5
            // holds at k = 768; at k = 3072 an H100's cuBLASLt (split-K, fp32
            // partials) measured 1.12e-5 (device run 3), so scale by sqrt(k / 768).
            const double tol = 1e-5 * std::sqrt(std::max(1.0, static_cast<double>(s.in) / 768.0));
            const double worst = test::expect_close(f32(got), f32(want), tol, what);
            std::printf("  %-58s worst rel. error %.3g\n", what.c_str(), worst);
          } else {
            expect_close(got, want, ydt, what);
          }
        }
}

// Row counts above 1024 share a cuBLASLt plan per bucket, chosen for the
// bucket and not for whichever call came first: the same product gives the
// same bits whatever ran before it (a fresh context each order).
TEST_F(CudaBackendOps, GemmResultsDoNotDependOnTheOrderOfCalls) {
  const Tensor w = gpu(as(normal({384, 256}, 0.05f, 21), DType::F16)), b = gpu(as(normal({384}, 0.1f, 22), DType::F16));
  std::vector<Tensor> xs;
  for (int64_t rows : {1100, 2000, 1500, 2048}) xs.push_back(gpu(as(normal({rows, 256}, 1.0f, 23), DType::F16)));
  auto run = [&](const std::vector<size_t>& order) {
    cuda::release_gemm_context();
    std::vector<Tensor> ys(xs.size());
    for (size_t i : order) {
      ys[i] = Tensor::empty({xs[i].dim(0), 384}, DType::F16, Device::CUDA);
      ops::linear_nt(xs[i], w, b, ys[i], {ops::Activation::gelu_new});
    }
    return ys;
  };
  const std::vector<Tensor> first = run({0, 1, 2, 3}), second = run({3, 2, 1, 0});
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor p = host(first[i]), q = host(second[i]);
    EXPECT_EQ(std::memcmp(p.raw(), q.raw(), p.nbytes()), 0) << xs[i].dim(0) << " rows";
  }
}

TEST_F(CudaBackendOps, MatmulNtWith16BitTables) {
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (auto [m, k, n] : {std::tuple{1, 768, 50257}, {33, 64, 301}, {4, 768, 4}}) {
      const Tensor a = as(normal({m, k}, 1.0f, 5), dt), t = as(normal({n, k}, 0.05f, 6), dt);
      Tensor want = Tensor::empty({m, n}, DType::F32);
      ops::matmul_nt(f32(a), f32(t), want);
      Tensor got = poisoned({m, n}, DType::F32);
      ops::matmul_nt(gpu(a), gpu(t), got);
      expect_close(got, want, dt == DType::F32 ? DType::F32 : DType::F16,
                   fmt::format("matmul_nt {} {}x{}x{} -> f32", name(dt), m, k, n));
    }
}

// fp32 activations with a 16-bit weight (the fp32 placement of a 16-bit
// checkpoint): the weight is converted exactly, then fp32 products.
TEST_F(CudaBackendOps, Fp32ActivationsWithSixteenBitWeights) {
  for (DType wdt : {DType::F16, DType::BF16}) {
    const Tensor x = normal({9, 200}, 1.0f, 7), w = as(normal({200, 77}, 0.05f, 8), wdt), b = normal({77}, 0.1f, 9);
    Tensor want = Tensor::empty({9, 77}, DType::F32), got = poisoned({9, 77}, DType::F32);
    ops::linear(x, w, b, want);
    ops::linear(gpu(x), gpu(w), gpu(b), got);
    expect_close(got, want, DType::F32, fmt::format("linear f32 x, {} weight", name(wdt)));
  }
}

namespace {

struct QuantCase {
  std::string name;
  quant::QuantizedWeight (*make)(const std::vector<float>& w, int64_t out, int64_t in);
};

const std::vector<QuantCase>& quant_cases() {
  static const std::vector<QuantCase> cases = {
      {"int8-tensor", [](const std::vector<float>& w, int64_t o, int64_t i) -> quant::QuantizedWeight {
         return quant::quantize_int8(w.data(), o, i, quant::Int8Scheme::affine, quant::Int8Granularity::per_tensor);
       }},
      {"int8-channel-sym", [](const std::vector<float>& w, int64_t o, int64_t i) -> quant::QuantizedWeight {
         return quant::quantize_int8(w.data(), o, i, quant::Int8Scheme::symmetric,
                                     quant::Int8Granularity::per_channel);
       }},
      {"nf4", [](const std::vector<float>& w, int64_t o, int64_t i) -> quant::QuantizedWeight {
         return quant::quantize_4bit(w.data(), o, i, {quant::Code4::nf4, 64, false});
       }},
      {"fp4-dq", [](const std::vector<float>& w, int64_t o, int64_t i) -> quant::QuantizedWeight {
         return quant::quantize_4bit(w.data(), o, i, {quant::Code4::fp4, 64, true});
       }},
      {"nf4-dq bs 128", [](const std::vector<float>& w, int64_t o, int64_t i) -> quant::QuantizedWeight {
         return quant::quantize_4bit(w.data(), o, i, {quant::Code4::nf4, 128, true});
       }},
      {"llm-int8", [](const std::vector<float>& w, int64_t o, int64_t i) -> quant::QuantizedWeight {
         return quant::quantize_llm_int8(w.data(), o, i);
       }},
  };
  return cases;
}

}  // namespace

// Packed products, fp32 activations: the GPU decodes every weight to the
// CPU's bits; LLM.int8 is the CPU's result bit for bit.
TEST_F(CudaBackendOps, QuantLinearFp32MatchesTheCpu) {
  for (const QuantCase& qc : quant_cases())
    for (auto [rows, in, out] : {std::tuple{1, 768, 2304}, {5, 256, 96}, {17, 768, 768}, {64, 3072, 768}}) {
      const std::vector<float> wv = test::normal_values(out * in, 0.05f, 10);
      const QuantizedTensor w = quant::to_quantized_tensor(qc.make(wv, out, in));
      Tensor x = normal({rows, in}, 1.0f, 11);
      // Outlier columns for LLM.int8 (|x| >= 6 in some rows).
      for (int64_t k = 3; k < in; k += 97) x.data<float>()[(k % rows) * in + k] = 7.5f;
      const Tensor b = normal({out}, 0.1f, 12);
      for (float threshold : {6.0f, 0.0f}) {
        if (threshold == 0.0f && qc.name != "llm-int8") continue;
        ops::QuantLinearOptions o;
        o.llm_int8_threshold = threshold;
        for (bool accumulate : {false, true}) {
          const Tensor y0 = normal({rows, out}, 1.0f, 13);
          Tensor want = y0.clone();
          ops::quant_linear(x, w, b, want, o, {.accumulate = accumulate});
          Tensor got = accumulate ? gpu(y0) : poisoned({rows, out}, DType::F32);
          ops::quant_linear(gpu(x), to_device(w, Device::CUDA), gpu(b), got, o, {.accumulate = accumulate});
          const std::string what = fmt::format("{} {}x{}x{}{}{}", qc.name, rows, in, out,
                                               qc.name == "llm-int8" ? fmt::format(" t{}", threshold) : "",
                                               accumulate ? " +=" : "");
          if (qc.name == "llm-int8") {
            expect_same_bits(got, want, what);
          } else {
            expect_close(got, want, DType::F32, what);
          }
        }
      }
    }
}

// 16-bit activations: the weight decoded into the activations' dtype, as
// bitsandbytes dequantizes into its compute dtype; the CPU reference runs
// fp32 on the same rounded values.
TEST_F(CudaBackendOps, QuantLinearSixteenBit) {
  for (const QuantCase& qc : quant_cases())
    for (DType dt : {DType::F16, DType::BF16}) {
      const int64_t rows = 19, in = 256, out = 320;
      const std::vector<float> wv = test::normal_values(out * in, 0.05f, 14);
      const QuantizedTensor w = quant::to_quantized_tensor(qc.make(wv, out, in));
      // The CPU's reference weight: decoded in fp32, then rounded to dt.
      Tensor wd = Tensor::empty({out, in}, DType::F32);
      {
        Tensor eye = Tensor::empty({out}, DType::I64);
        for (int64_t j = 0; j < out; ++j) eye.data<int64_t>()[j] = j;
        ops::gather_rows(w, eye, wd);
      }
      const Tensor x = as(normal({rows, in}, 1.0f, 15), dt), b = as(normal({out}, 0.1f, 16), dt);
      Tensor want = Tensor::empty({rows, out}, DType::F32);
      Tensor got = poisoned({rows, out}, dt);
      ops::QuantLinearOptions o;
      o.compute = dt;
      ops::quant_linear(gpu(x), to_device(w, Device::CUDA), gpu(b), got, o);
      if (qc.name == "llm-int8") {
        // Its own arithmetic (int8 codes of the fp16 activations): the CPU's
        // LLM.int8 on the same values, rounded to dt.
        ops::quant_linear(f32(x), w, f32(b), want);
      } else {
        ops::matmul_nt(f32(x), f32(as(wd, dt)), want);
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < out; ++j) want.data<float>()[i * out + j] += f32(b).data<float>()[j];
      }
      expect_close(got, want, dt, fmt::format("quant_linear {} {} {}x{}x{}", qc.name, name(dt), rows, in, out));
    }
}

// A few rows (decode steps) take the fused dequantize-GEMV: the fp32
// product of the exact decoded weight whatever the activations' dtype (it
// reads 16-bit x exactly and never rounds w'), so the reference is the CPU's
// fp32 op on the same (rounded) x. Shapes reach each kernel configuration:
// one chunk per lane (in 768), four (in 3072), four output rows per warp
// (out >= 8192), the fallback (in % 32 != 0, blocks across rows), and 1, 2,
// 3 and 8 activation rows; epilogues: bias, GELU, the residual add.
TEST_F(CudaBackendOps, QuantGemvFewRows) {
  struct Shape3 {
    int64_t rows, in, out;
  };
  for (const QuantCase& qc : quant_cases()) {
    if (qc.name == "llm-int8") continue;  // its own int8 pipeline at every row count
    for (Shape3 s : {Shape3{1, 768, 2304}, {2, 3072, 768}, {8, 768, 8200}, {3, 100, 70}, {1, 40, 33}}) {
      const std::vector<float> wv = test::normal_values(s.out * s.in, 0.05f, 30);
      const QuantizedTensor w = quant::to_quantized_tensor(qc.make(wv, s.out, s.in));
      const QuantizedTensor wg = to_device(w, Device::CUDA);
      for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        const Tensor x = as(normal({s.rows, s.in}, 1.0f, 31), dt), b = normal({s.out}, 0.1f, 32);
        const Tensor b_dt = as(b, dt);  // the layers hold the bias in the output's dtype
        for (int epi = 0; epi < 3; ++epi) {
          if (epi == 2 && dt != DType::F32) continue;  // the residual is fp32
          const ops::Epilogue e = epi == 1   ? ops::Epilogue{.activation = ops::Activation::gelu_new}
                                  : epi == 2 ? ops::Epilogue{.accumulate = true}
                                             : ops::Epilogue{};
          const Tensor y0 = normal({s.rows, s.out}, 1.0f, 33);
          Tensor want = y0.clone();
          ops::quant_linear(f32(x), w, f32(b_dt), want, {}, e);
          Tensor got = epi == 2 ? gpu(y0) : poisoned({s.rows, s.out}, dt);
          ops::QuantLinearOptions o;
          o.compute = dt;
          ops::quant_linear(gpu(x), wg, gpu(b_dt), got, o, e);
          expect_close(got, want, dt,
                       fmt::format("gemv {} {} {}x{}x{} epilogue {}", qc.name, name(dt), s.rows, s.in, s.out, epi));
        }
      }
    }
  }
}

TEST_F(CudaBackendOps, GathersAreExact) {
  const int64_t rows = 301, cols = 96;
  Tensor idx = Tensor::from_vector<int64_t>({0, 300, 17, 17, 150, 2}, {6});
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const Tensor t = as(normal({rows, cols}, 1.0f, 17), dt);
    for (bool acc : {false, true}) {
      const Tensor base = normal({6, cols}, 1.0f, 18);
      Tensor want = base.clone(), got = acc ? gpu(base) : poisoned({6, cols}, DType::F32);
      ops::gather_rows(t, idx, want, acc);
      ops::gather_rows(gpu(t), idx, got, acc);
      expect_same_bits(got, want, fmt::format("gather {} {}", name(dt), acc ? "+=" : "="));
    }
  }
  for (const QuantCase& qc : quant_cases()) {
    const QuantizedTensor w =
        quant::to_quantized_tensor(qc.make(test::normal_values(rows * cols, 0.05f, 19), rows, cols));
    Tensor want = Tensor::empty({6, cols}, DType::F32), got = poisoned({6, cols}, DType::F32);
    ops::gather_rows(w, idx, want);
    ops::gather_rows(to_device(w, Device::CUDA), idx, got);
    expect_same_bits(got, want, "gather " + qc.name);
  }
  // An index outside the table is an Error before any kernel runs.
  Tensor out = Tensor::empty({1, 8}, DType::F32, Device::CUDA);
  EXPECT_THROW(ops::gather_rows(gpu(normal({4, 8}, 1.0f, 1)), Tensor::from_vector<int64_t>({4}, {1}), out), Error);
}

TEST_F(CudaBackendOps, CastsAndLayerNormOutputs) {
  const Tensor x = normal({37, 771}, 3.0f, 20);
  for (DType dt : {DType::F16, DType::BF16}) {
    Tensor got = poisoned({37, 771}, dt);
    ops::cast(gpu(x), got);
    expect_same_bits(got, as(x, dt), fmt::format("cast f32 -> {}", name(dt)));
    Tensor back = poisoned({37, 771}, DType::F32);
    ops::cast(got, back);
    expect_same_bits(back, f32(as(x, dt)), fmt::format("cast {} -> f32", name(dt)));
  }
  // LayerNorm: the block-per-row kernel (771 columns) and the warp-per-row
  // one (multiples of 128 up to 1024), 1 and 37 rows, every output dtype,
  // and in place (y = x, fp32).
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 771}, {37, 768}, {1, 768}, {5, 128}, {3, 1024}}) {
    const Tensor xl = normal({rows, cols}, 3.0f, 23);
    const Tensor w = normal({cols}, 1.0f, 21), b = normal({cols}, 0.5f, 22);
    Tensor ref = Tensor::empty({rows, cols}, DType::F32);
    ops::layer_norm(xl, w, b, 1e-5f, ref);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      Tensor got = poisoned({rows, cols}, dt);
      ops::layer_norm(gpu(xl), gpu(w), gpu(b), 1e-5f, got);
      expect_close(got, ref, dt, fmt::format("layer_norm {}x{} -> {}", rows, cols, name(dt)));
    }
    Tensor inplace = gpu(xl);
    ops::layer_norm(inplace, gpu(w), gpu(b), 1e-5f, inplace);
    expect_close(inplace, ref, DType::F32, fmt::format("layer_norm {}x{} in place", rows, cols));
  }
}

TEST_F(CudaBackendOps, AttentionSixteenBit) {
  for (DType dt : {DType::F16, DType::BF16})
    for (auto [B, T, H, hd] : {std::tuple{2, 37, 4, 16}, {1, 130, 12, 64}, {3, 5, 2, 8}}) {
      const int64_t C = H * hd;
      const Tensor qkv = as(normal({B, T, 3 * C}, 1.0f, 23), dt);
      Tensor mask = Tensor::empty({B, T}, DType::U8);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T - b * (T / 4); ++t) mask.data<uint8_t>()[b * T + t] = 1;
      Tensor want = Tensor::empty({B, T, C}, DType::F32);
      ops::causal_self_attention(f32(qkv), mask, H, 0.125f, want);
      Tensor got = poisoned({B, T, C}, dt);
      ops::causal_self_attention(gpu(qkv), gpu(mask), H, 0.125f, got);
      expect_close(got, want, dt, fmt::format("attention {} B{} T{} H{} hd{}", name(dt), B, T, H, hd));

      // The same through a KV cache, prefill then single steps.
      const int64_t cap = T + 3;
      Tensor ck = Tensor::empty({B, H, cap, hd}, dt, Device::CUDA), cv = Tensor::empty({B, H, cap, hd}, dt, Device::CUDA);
      Tensor ck32 = Tensor::empty({B, H, cap, hd}, DType::F32), cv32 = Tensor::empty({B, H, cap, hd}, DType::F32);
      Tensor full_mask = Tensor::empty({B, cap}, DType::U8);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < cap; ++t) full_mask.data<uint8_t>()[b * cap + t] = 1;
      const Tensor qkv2 = as(normal({B, 1, 3 * C}, 1.0f, 24), dt);
      Tensor w1 = Tensor::empty({B, T, C}, DType::F32), w2 = Tensor::empty({B, 1, C}, DType::F32);
      ops::causal_self_attention_cached(f32(qkv), ck32, cv32, 0, full_mask, H, 0.125f, w1);
      ops::causal_self_attention_cached(f32(qkv2), ck32, cv32, T, full_mask, H, 0.125f, w2);
      Tensor g1 = poisoned({B, T, C}, dt), g2 = poisoned({B, 1, C}, dt);
      const Tensor dmask = gpu(full_mask);
      ops::causal_self_attention_cached(gpu(qkv), ck, cv, 0, dmask, H, 0.125f, g1);
      ops::causal_self_attention_cached(gpu(qkv2), ck, cv, T, dmask, H, 0.125f, g2);
      expect_close(g1, w1, dt, fmt::format("cached attention prefill {} B{} T{} H{}", name(dt), B, T, H));
      expect_close(g2, w2, dt, fmt::format("cached attention step {} B{} T{} H{}", name(dt), B, T, H));
    }
}

TEST_F(CudaBackendOps, GeluOnSixteenBit) {
  const Tensor x = normal({5000}, 3.0f, 25);
  for (DType dt : {DType::F16, DType::BF16}) {
    Tensor want = f32(as(x, dt));
    ops::gelu_new(want);
    Tensor got = gpu(as(x, dt));
    ops::gelu_new(got);
    expect_close(got, want, dt, fmt::format("gelu_new {}", name(dt)));
  }
}

// The tensor-core flash kernel (sequence layouts) and the split-K decode
// kernels (a cache with device state) against the CPU's fp32 attention on
// the same 16-bit values.
TEST_F(CudaBackendOps, FlashAndDecodeAttention) {
  const int64_t H = 12, hd = 64, C = H * hd;
  const std::vector<int64_t> lengths{51, 1, 130, 7};
  int64_t total = 0, T = 0;
  for (int64_t n : lengths) total += n, T = std::max(T, n);
  for (DType dt : {DType::F16, DType::BF16}) {
    // Packed.
    const Tensor qkv = as(normal({total, 3 * C}, 1.0f, 26), dt);
    Tensor want = Tensor::empty({total, C}, DType::F32);
    ops::causal_self_attention(f32(qkv), ops::SequenceLayout::packed(lengths, Device::CPU), H, 0.125f, want);
    Tensor got = poisoned({total, C}, dt);
    ops::causal_self_attention(gpu(qkv), ops::SequenceLayout::packed(lengths, Device::CUDA), H, 0.125f, got);
    expect_close(got, want, dt, fmt::format("flash attention packed {}", name(dt)));
    // Padded [B, T]: padding queries attend the valid keys.
    const int64_t B = static_cast<int64_t>(lengths.size());
    const Tensor pq = as(normal({B * T, 3 * C}, 1.0f, 27), dt);
    Tensor pw = Tensor::empty({B * T, C}, DType::F32);
    ops::causal_self_attention(f32(pq), ops::SequenceLayout::padded(lengths, T, Device::CPU), H, 0.125f, pw);
    Tensor pg = poisoned({B * T, C}, dt);
    ops::causal_self_attention(gpu(pq), ops::SequenceLayout::padded(lengths, T, Device::CUDA), H, 0.125f, pg);
    expect_close(pg, pw, dt, fmt::format("flash attention padded {}", name(dt)));

    // Decode: prefill 37 positions, then steps of 1 and 3 new queries, with
    // a masked hole, through the device-state kernels.
    const int64_t DB = 2, cap = 64;
    Tensor ck = Tensor::empty({DB, H, cap, hd}, dt, Device::CUDA), cv = Tensor::empty({DB, H, cap, hd}, dt, Device::CUDA);
    Tensor ck32 = Tensor::empty({DB, H, cap, hd}, DType::F32), cv32 = Tensor::empty({DB, H, cap, hd}, DType::F32);
    Tensor mask = Tensor::empty({DB, cap}, DType::U8);
    for (int64_t t = 0; t < cap; ++t) mask.data<uint8_t>()[t] = mask.data<uint8_t>()[cap + t] = t != 5 ? 1 : 0;
    const ops::CacheKernelState state = ops::make_cache_kernel_state(DB, H, hd, cap, dt, Device::CUDA);
    ASSERT_TRUE(state.past.defined());
    int64_t past = 0;
    for (int64_t step : {int64_t{37}, int64_t{1}, int64_t{3}, int64_t{1}}) {
      const Tensor q = as(normal({DB, step, 3 * C}, 1.0f, 28 + static_cast<uint32_t>(past)), dt);
      Tensor w = Tensor::empty({DB, step, C}, DType::F32);
      ops::causal_self_attention_cached(f32(q), ck32, cv32, past, mask, H, 0.125f, w);
      const auto p = static_cast<int32_t>(past);
      copy_bytes(state.past.raw(), Device::CUDA, &p, Device::CPU, sizeof(p));
      Tensor g = poisoned({DB, step, C}, dt);
      ops::causal_self_attention_cached(gpu(q), ck, cv, past, gpu(mask), H, 0.125f, g, state);
      expect_close(g, w, dt, fmt::format("decode attention {} past {} +{}", name(dt), past, step));
      past += step;
    }
  }
}
