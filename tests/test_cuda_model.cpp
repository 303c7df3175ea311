// GPT2Model placed on the GPU against itself on the CPU: every weight
// format, fp32 (within fp32 rounding) and 16-bit compute (within the
// activations' rounding), the packed classification batches against the
// padded ones, decoding through the KV cache against full forwards, greedy
// generation, and the errors (bad ids before any kernel, out of memory as
// one clear error). Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/device_memory.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "quant/checkpoint_quantizer.h"
#include "support/test_env.h"

using namespace gpt2q;

namespace {

class CudaModel : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda_device_usable(&why)) GTEST_SKIP() << "no usable CUDA device (" << why << "): CUDA tests not run";
  }
};

Tensor host(const Tensor& t) { return to_device(t, Device::CPU); }

// A small GPT-2 (head_dim 64, as every GPT-2 size: the tensor-core kernels
// apply) with the GPT-2 vocabulary's pad token.
GPT2Config small_config() {
  GPT2Config c = geometry_config("128x2x2", "test");
  c.vocab_size = 1000;
  c.n_positions = 128;
  c.id2label = {"a", "b", "c", "d"};
  c.pad_token_id = 999;
  c.architectures = {"GPT2ForSequenceClassification"};
  return c;
}

Checkpoint variant(const Checkpoint& src, const std::string& method) {
  if (method == "f32") return src;
  quant::QuantizeOptions o;
  o.method = method;
  if (method == "nf4") o.double_quant = true;
  return quant::quantize_checkpoint(src, o).checkpoint;
}

TokenBatch texts(int64_t vocab) {
  std::vector<std::vector<int32_t>> seqs;
  for (int64_t n : {51, 7, 1, 90, 23}) {
    std::vector<int32_t> s;
    for (int64_t t = 0; t < n; ++t) s.push_back(static_cast<int32_t>((t * 37 + n * 11) % (vocab - 1)));
    seqs.push_back(s);
  }
  return TokenBatch::from_sequences(seqs, static_cast<int32_t>(vocab - 1));
}

// |got - want| <= tol · (|want| + mean |want|) element-wise.
void expect_close(const Tensor& got_any, const Tensor& want_any, double tol, const std::string& what) {
  const double worst = test::expect_close(host(got_any), host(want_any), tol, what);
  std::printf("  %-52s worst rel. error %.3g\n", what.c_str(), worst);
}

}  // namespace

TEST_F(CudaModel, ClassifierLogitsEveryFormatAndComputeDtype) {
  const Checkpoint src = make_synthetic_checkpoint(small_config(), ModelKind::SequenceClassification, 7);
  const TokenBatch tb = texts(1000);
  for (const std::string method : {"f32", "int8-tensor", "llm-int8", "nf4", "fp4"}) {
    const Checkpoint ck = variant(src, method);
    const Tensor want = GPT2Model::from_checkpoint(ck)->class_logits(tb);
    // fp32 on the GPU: the same arithmetic up to summation order.
    const Tensor f32 = GPT2Model::from_checkpoint(ck, {Device::CUDA, DType::F32})->class_logits(tb);
    expect_close(f32, want, 1e-4, method + " fp32");
    for (DType dt : {DType::F16, DType::BF16}) {
      // Packed batches (no padding rows) with 16-bit activations.
      auto model = GPT2Model::from_checkpoint(ck, {Device::CUDA, dt});
      EXPECT_EQ(model->placement().device, Device::CUDA);
      const Tensor got = model->class_logits(tb);
      expect_close(got, want, dt == DType::F16 ? 2e-2 : 8e-2, fmt::format("{} {}", method, dtype_name(dt)));
      // One text alone gives its row of the batch (packing mixes nothing).
      const TokenBatch one = TokenBatch::from_sequences({std::vector<int32_t>(tb.ids.begin() + 3 * tb.seq,
                                                                              tb.ids.begin() + 3 * tb.seq + 90)},
                                                        999);
      const Tensor alone = host(model->class_logits(one)), all = host(got);
      for (int64_t l = 0; l < 4; ++l)
        EXPECT_NEAR(alone.data<float>()[l], all.data<float>()[3 * 4 + l], 1e-2 * (1 + std::fabs(alone.data<float>()[l])))
            << method << " " << dtype_name(dt) << " label " << l;
    }
  }
}

TEST_F(CudaModel, DecodingThroughTheCacheEqualsFullForwards) {
  GPT2Config c = small_config();
  c.architectures = {"GPT2LMHeadModel"};
  c.id2label.clear();
  const Checkpoint ck = make_synthetic_checkpoint(c, ModelKind::CausalLM, 8);
  std::vector<int32_t> ids;
  for (int t = 0; t < 40; ++t) ids.push_back((t * 53 + 7) % 999);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    auto model = GPT2Model::from_checkpoint(ck, {Device::CUDA, dt});
    const Tensor full = model->hidden_states(TokenBatch::from_sequences({ids}, 999));
    KVCache cache = model->new_cache(1, 64);
    EXPECT_EQ(cache.kernel_state.past.defined(), dt != DType::F32);
    std::vector<Tensor> parts;
    int64_t at = 0;
    for (int64_t n : {int64_t{30}, int64_t{1}, int64_t{4}, int64_t{1}, int64_t{4}}) {
      TokenBatch step{1, n, std::vector<int32_t>(ids.begin() + at, ids.begin() + at + n), {n}};
      parts.push_back(host(model->hidden_states(step, &cache)));
      at += n;
    }
    ASSERT_EQ(at, 40);
    Tensor stitched = Tensor::empty({1, 40, c.n_embd}, DType::F32);
    int64_t row = 0;
    for (const Tensor& p : parts)
      for (int64_t t = 0; t < p.dim(1); ++t, ++row)
        std::copy_n(p.data<float>() + t * c.n_embd, c.n_embd, stitched.data<float>() + row * c.n_embd);
    expect_close(stitched, full, dt == DType::F32 ? 1e-5 : 3e-2, fmt::format("cached decode {}", dtype_name(dt)));
  }
}

TEST_F(CudaModel, GreedyGenerationMatchesTheCpu) {
  GPT2Config c = small_config();
  c.architectures = {"GPT2LMHeadModel"};
  c.id2label.clear();
  const Checkpoint ck = make_synthetic_checkpoint(c, ModelKind::CausalLM, 9);
  GenerateOptions o;
  o.max_new_tokens = 24;
  const std::vector<int32_t> prompt{5, 17, 300, 42};
  const auto want = generate(*GPT2Model::from_checkpoint(ck), prompt, o);
  EXPECT_EQ(generate(*GPT2Model::from_checkpoint(ck, {Device::CUDA, DType::F32}), prompt, o), want);
  // 16-bit: the same length; the ids may part where two logits tie closer
  // than bf16 rounding, so only the first step is held equal.
  for (DType dt : {DType::F16, DType::BF16}) {
    const auto got = generate(*GPT2Model::from_checkpoint(ck, {Device::CUDA, dt}), prompt, o);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(got[prompt.size()], want[prompt.size()]) << dtype_name(dt);
  }
}

TEST_F(CudaModel, BadIdsAreAnErrorBeforeAnyKernel) {
  const Checkpoint ck = make_synthetic_checkpoint(small_config(), ModelKind::SequenceClassification, 7);
  for (DType dt : {DType::F32, DType::F16}) {
    auto model = GPT2Model::from_checkpoint(ck, {Device::CUDA, dt});
    const TokenBatch bad = TokenBatch::from_sequences({{1, 2, 1000}}, 999);
    try {
      (void)model->class_logits(bad);
      ADD_FAILURE() << "no error for token id 1000";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("token id 1000 is out of range for a vocabulary of 1000"),
                std::string::npos)
          << e.what();
    }
    // The device is still healthy afterwards.
    const Tensor ok = host(model->class_logits(TokenBatch::from_sequences({{1, 2, 3}}, 999)));
    EXPECT_TRUE(std::isfinite(ok.data<float>()[0]));
    device_synchronize(Device::CUDA);
  }
}

TEST_F(CudaModel, OutOfMemoryIsOneClearErrorAndFreesNothingLive) {
  const DeviceMemoryStats before = device_memory_stats(Device::CUDA);
  try {
    (void)Tensor::empty({int64_t{1} << 48}, DType::F32, Device::CUDA);  // 1 PiB
    ADD_FAILURE() << "allocated 1 PiB";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("CUDA: out of memory: 1024.00 TiB requested"), std::string::npos) << m;
    EXPECT_NE(m.find(" free"), std::string::npos) << m;
  }
  EXPECT_EQ(device_memory_stats(Device::CUDA).used, before.used);
  // Still usable.
  EXPECT_EQ(host(to_device(Tensor::from_vector<float>({1, 2}, {2}), Device::CUDA)).data<float>()[1], 2.0f);
}
