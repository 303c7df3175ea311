// GPU decoders of the quantized weight formats (backend/cuda/dequant.h)
// against the CPU reference decoders in src/quant, bit for bit: NF4 / FP4
// with plain and double-quantized block scales, and int8 per tensor / per
// channel, affine and symmetric. The inputs include denormal outputs (a
// flush-to-zero kernel would fail) and nested scales where a fused
// multiply-add gives other bits than a multiply and an add (a contracted
// kernel would fail). Without a CUDA device every test skips and says why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include <fmt/format.h>

#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/dequant.h"
#include "core/device_memory.h"
#include "core/tensor.h"
#include "quant/blockwise4.h"
#include "quant/double_quant.h"
#include "quant/int8_affine.h"
#include "quant/quantized_checkpoint.h"
#include "ops/ops.h"
#include "support/test_env.h"

using namespace gpt2q;
using namespace gpt2q::quant;

namespace {

// The thread's stream, which gpt2q's ops and copies use.
cudaStream_t stream() { return static_cast<cudaStream_t>(gpt2q::cuda_stream()); }

class CudaDequant : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::device_available(&why)) GTEST_SKIP() << "no usable CUDA device (" << why << "): CUDA tests not run";
  }
};

template <typename T>
Tensor upload(const std::vector<T>& v) {
  return to_device(Tensor::from_vector<T>(v, {static_cast<int64_t>(v.size())}), Device::CUDA);
}

template <typename T>
const T* device_ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw());
}

// Number of elements whose bits differ (0 = bit-identical); prints the first few.
size_t count_bit_differences(const Tensor& device_out, const std::vector<float>& want, const std::string& what) {
  const Tensor got = to_device(device_out, Device::CPU);
  EXPECT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  size_t diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t g, w;
    std::memcpy(&g, got.data<float>() + i, 4);
    std::memcpy(&w, &want[i], 4);
    if (g != w && ++diff <= 5)
      ADD_FAILURE() << what << " [" << i << "]: got " << got.data<float>()[i] << " want " << want[i];
  }
  return diff;
}

// GPT-2-like weights (sd 0.02) with an all-zero block's worth of zeros at the
// start and, from `tiny_from` on, values around 1e-38 whose decoded values
// (table entry times a plain fp32 absmax) are denormal.
std::vector<float> test_weights(int64_t n, uint32_t seed, int64_t tiny_from) {
  std::vector<float> w = test::normal_values(n, 0.02f, seed);
  for (int64_t i = 0; i < std::min<int64_t>(n, 64); ++i) w[i] = 0.0f;
  for (int64_t i = tiny_from; i < n; ++i) w[i] *= 1e-36f;
  return w;
}

bool has_denormal(const std::vector<float>& v) {
  for (float x : v)
    if (std::fpclassify(x) == FP_SUBNORMAL) return true;
  return false;
}

cuda::Code4Table table_of(Code4 type) {
  cuda::Code4Table t{};
  std::copy(code4_table(type).begin(), code4_table(type).end(), t.value);
  return t;
}

}  // namespace

TEST_F(CudaDequant, Blockwise4BitIdenticalToCpu) {
  // Odd element counts (a half-used last byte), blocks that straddle rows,
  // a last block shorter than the rest, and many nested blocks.
  struct Case {
    int64_t out, in, blocksize;
  };
  for (const Case c : {Case{3, 77, 64}, Case{64, 768, 64}, Case{768, 2304, 64}, Case{50, 333, 32},
                       Case{17, 1000, 4096}, Case{300, 768, 128}}) {
    const int64_t n = c.out * c.in;
    const std::vector<float> w = test_weights(n, static_cast<uint32_t>(n), n / 2);
    for (Code4 type : {Code4::nf4, Code4::fp4}) {
      for (bool dq : {false, true}) {
        const Blockwise4Weight q = quantize_4bit(w.data(), c.out, c.in, {type, c.blocksize, dq});
        const std::string what = fmt::format("{} {}x{} blocksize {}", q.format(), c.out, c.in, c.blocksize);
        std::vector<float> want(static_cast<size_t>(n));
        dequantize_4bit(q, want.data());
        // (Double quantization cannot represent the tiny block scales, so only
        // the plain variants decode to denormals.)
        if (!dq) {
          EXPECT_TRUE(has_denormal(want)) << what << ": the inputs no longer reach the denormal range";
        }

        const std::vector<float> absmax_cpu = q.block_absmax();
        Tensor absmax = Tensor::empty({q.num_blocks()}, DType::F32, Device::CUDA);
        if (dq) {
          const DoubleQuantAbsmax& nested = *q.nested;
          cuda::DynamicMapTable map{};
          std::copy(dynamic_map_signed().begin(), dynamic_map_signed().end(), map.value);
          const Tensor codes = upload(nested.q), state2 = upload(nested.state2);
          cuda::dequantize_nested_absmax(device_ptr<uint8_t>(codes), device_ptr<float>(state2), nested.offset,
                                         nested.n, nested.blocksize, map, static_cast<float*>(absmax.raw()), stream());
          EXPECT_EQ(count_bit_differences(absmax, absmax_cpu, what + " nested absmax"), 0u);
        } else {
          absmax = upload(q.absmax);
        }
        const Tensor packed = upload(q.packed);
        Tensor out = Tensor::empty({c.out, c.in}, DType::F32, Device::CUDA);
        cuda::dequantize_4bit(device_ptr<uint8_t>(packed), device_ptr<float>(absmax), n, q.blocksize,
                              table_of(type), static_cast<float*>(out.raw()), stream());
        EXPECT_EQ(count_bit_differences(out, want, what), 0u);
      }
    }
  }
  cuda::synchronize();
}

TEST_F(CudaDequant, Blockwise4AnyBlocksizeAndAlignment) {
  // The decoder's contract is wider than bitsandbytes' sizes: any blocksize
  // (odd ones split a byte's two values between blocks) and any output
  // alignment (the 16-byte vector path then gives way to the bytewise one).
  // Random codes and scales, decoded by the CPU reference.
  std::mt19937_64 rng(42);
  for (int64_t blocksize : {7, 12, 64}) {
    for (int64_t shift : {0, 1}) {
      Blockwise4Weight w;
      w.type = blocksize == 12 ? Code4::fp4 : Code4::nf4;
      w.out = 9;
      w.in = 101;  // odd element count
      w.blocksize = blocksize;
      w.packed.resize(static_cast<size_t>((w.numel() + 1) / 2));
      for (uint8_t& b : w.packed) b = static_cast<uint8_t>(rng() >> 56);
      for (int64_t b = 0; b < w.num_blocks(); ++b) w.absmax.push_back(static_cast<float>((rng() >> 40) * 0x1p-24));
      std::vector<float> want(static_cast<size_t>(w.numel()));
      dequantize_4bit(w, want.data());
      const Tensor packed = upload(w.packed), absmax = upload(w.absmax);
      Tensor buffer = Tensor::empty({w.numel() + shift}, DType::F32, Device::CUDA);
      cuda::dequantize_4bit(device_ptr<uint8_t>(packed), device_ptr<float>(absmax), w.numel(), blocksize,
                            table_of(w.type), static_cast<float*>(buffer.raw()) + shift, stream());
      EXPECT_EQ(count_bit_differences(buffer.slice_rows(shift, w.numel() + shift), want,
                                      fmt::format("{} blocksize {} output offset {}", w.format(), blocksize, shift)),
                0u);
    }
  }
  cuda::synchronize();
}

// Host only (runs without a GPU too).
TEST(CudaDequantData, NestedAbsmaxDataWouldCatchAFusedMultiplyAdd) {
  // The bitwise test above only proves -fmad=false matters if, for its data,
  // an FMA rounds differently from a multiply and an add somewhere.
  const std::vector<float> w = test_weights(768 * 2304, 768 * 2304, 768 * 2304);
  const Blockwise4Weight q = quantize_4bit(w.data(), 768, 2304, {Code4::nf4, 64, true});
  const auto& map = dynamic_map_signed();
  size_t differ = 0;
  for (int64_t i = 0; i < q.nested->n; ++i) {
    const float a = map[q.nested->q[i]], b = q.nested->state2[i / q.nested->blocksize];
    differ += std::fma(a, b, q.nested->offset) != q.nested->absmax(i);
  }
  EXPECT_GT(differ, 0u);
  std::printf("  %zu of %lld nested scales differ between fma and multiply-add\n", differ,
              static_cast<long long>(q.nested->n));
}

TEST_F(CudaDequant, Int8BitIdenticalToCpu) {
  for (auto [out, in] : {std::pair{3, 77}, {768, 2304}, {1, 1}}) {
    std::vector<float> w = test::normal_values(out * in, 0.05f, static_cast<uint32_t>(out * 31 + in));
    // Row 0 in [5, 6]: a range excluding 0, so the affine zero point falls
    // far outside [-128, 127] (kept as int32).
    for (int64_t k = 0; k < in; ++k) w[k] = 5.0f + std::fabs(w[k]);
    for (Int8Scheme scheme : {Int8Scheme::affine, Int8Scheme::symmetric}) {
      for (Int8Granularity g : {Int8Granularity::per_tensor, Int8Granularity::per_channel}) {
        const Int8Weight q = quantize_int8(w.data(), out, in, scheme, g);
        const std::string what = fmt::format("{} {}x{}", q.format(), out, in);
        std::vector<float> want(static_cast<size_t>(out * in));
        dequantize_int8(q, want.data());
        const Tensor codes = upload(q.q), scale = upload(q.scale);
        const Tensor zero_point = q.zero_point.empty() ? Tensor() : upload(q.zero_point);
        Tensor dst = Tensor::empty({out, in}, DType::F32, Device::CUDA);
        cuda::dequantize_int8(device_ptr<int8_t>(codes), device_ptr<float>(scale),
                              zero_point.defined() ? device_ptr<int32_t>(zero_point) : nullptr, out, in,
                              g == Int8Granularity::per_channel, static_cast<float*>(dst.raw()), stream());
        EXPECT_EQ(count_bit_differences(dst, want, what), 0u);
        if (scheme == Int8Scheme::affine && g == Int8Granularity::per_channel && out > 1) {
          EXPECT_LT(q.zero_point[0], -128) << what << ": row 0 should need an int32 zero point";
        }
      }
    }
  }
  cuda::synchronize();
}

// The whole-weight decode that feeds the GEMMs (cuda::dequantize), into
// every output dtype: each value is the CPU's fp32 value rounded once to the
// dtype. Shapes and offsets reach both kernel forms: the vectorised one
// (power-of-two blocks, aligned output; 8 values per unit) with a tail of
// n % 8 values, and the element-wise one (an output 2 elements off 16-byte
// alignment, int8 per channel with in % 8 != 0).
TEST_F(CudaDequant, WholeWeightIntoEveryDtypeIsTheCpuValueRoundedOnce) {
  struct Case {
    std::string name;
    QuantizedWeight (*make)(const std::vector<float>& w, int64_t out, int64_t in);
  };
  const std::vector<Case> cases = {
      {"nf4 bs64", [](const std::vector<float>& w, int64_t o, int64_t i) -> QuantizedWeight {
         return quantize_4bit(w.data(), o, i, {Code4::nf4, 64, false});
       }},
      {"fp4-dq bs32", [](const std::vector<float>& w, int64_t o, int64_t i) -> QuantizedWeight {
         return quantize_4bit(w.data(), o, i, {Code4::fp4, 32, true});
       }},
      {"nf4-dq bs256", [](const std::vector<float>& w, int64_t o, int64_t i) -> QuantizedWeight {
         return quantize_4bit(w.data(), o, i, {Code4::nf4, 256, true});
       }},
      {"int8 affine tensor", [](const std::vector<float>& w, int64_t o, int64_t i) -> QuantizedWeight {
         return quantize_int8(w.data(), o, i, Int8Scheme::affine, Int8Granularity::per_tensor);
       }},
      {"int8 affine channel", [](const std::vector<float>& w, int64_t o, int64_t i) -> QuantizedWeight {
         return quantize_int8(w.data(), o, i, Int8Scheme::affine, Int8Granularity::per_channel);
       }},
      {"int8 sym channel", [](const std::vector<float>& w, int64_t o, int64_t i) -> QuantizedWeight {
         return quantize_int8(w.data(), o, i, Int8Scheme::symmetric, Int8Granularity::per_channel);
       }},
  };
  for (const Case& c : cases)
    for (auto [out, in] : {std::pair<int64_t, int64_t>{768, 2304}, {3, 77}, {5, 96}, {1, 1}}) {
      // Small weights: plain values (test_weights zeroes the first 64).
      const uint32_t seed = static_cast<uint32_t>(out * 7 + in);
      const std::vector<float> w =
          out * in >= 128 ? test_weights(out * in, seed, out * in / 2) : test::normal_values(out * in, 0.05f, seed);
      const QuantizedTensor q = to_quantized_tensor(c.make(w, out, in));
      const QuantizedTensor dq = to_device(q, Device::CUDA);
      // The CPU's decoded fp32 weight (the reference decoders in quant/).
      Tensor want32 = Tensor::empty({out, in}, DType::F32);
      {
        Tensor idx = Tensor::empty({out}, DType::I64);
        for (int64_t j = 0; j < out; ++j) idx.data<int64_t>()[j] = j;
        ops::gather_rows(q, idx, want32);
      }
      const qformat::Format& f = q.format;
      Tensor absmax_scratch =
          Tensor::empty({std::max<int64_t>(1, f.blocks())}, DType::F32, Device::CUDA);
      for (DType dt : {DType::F32, DType::F16, DType::BF16})
        for (int64_t offset : {0, 2}) {
          Tensor dst = Tensor::empty({out * in + offset}, dt, Device::CUDA);
          char* base = static_cast<char*>(dst.raw()) + offset * static_cast<int64_t>(dtype_size(dt));
          cuda::dequantize(dq.view(), base, dt, static_cast<float*>(absmax_scratch.raw()), stream());
          const Tensor got_all = to_device(dst, Device::CPU);
          Tensor want_dt = Tensor::empty({out, in}, dt);
          ops::cast(want32, want_dt);
          const size_t es = dtype_size(dt);
          size_t diff = 0;
          for (int64_t i = 0; i < out * in; ++i)
            diff += std::memcmp(static_cast<const char*>(got_all.raw()) + (offset + i) * es,
                                static_cast<const char*>(want_dt.raw()) + i * es, es) != 0;
          EXPECT_EQ(diff, 0u) << c.name << " " << out << "x" << in << " " << dtype_name(dt) << " offset " << offset;
        }
    }
  cuda::synchronize();
}
