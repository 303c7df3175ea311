// GPT2Model placed on the GPU against itself on the CPU: every weight
// format, fp32 (within fp32 rounding) and 16-bit compute (within the
// activations' rounding), the packed classification batches against the
// padded ones, decoding through the KV cache against full forwards, greedy
// generation, and the errors (bad ids before any kernel, out of memory as
// one clear error). Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/device_graph.h"
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
    auto f32_model = GPT2Model::from_checkpoint(ck, {Device::CUDA, DType::F32});
    const Tensor f32 = f32_model->class_logits(tb);
    expect_close(f32, want, 1e-4, method + " fp32");
    // One text alone runs padded to its length bucket (23 tokens -> 32): the
    // padding rows must change nothing the text's pooled row reads.
    const TokenBatch text23 = TokenBatch::from_sequences(
        {std::vector<int32_t>(tb.ids.begin() + 4 * tb.seq, tb.ids.begin() + 4 * tb.seq + 23)}, 999);
    expect_close(f32_model->class_logits(text23), GPT2Model::from_checkpoint(ck)->class_logits(text23), 1e-4,
                 method + " fp32, one text padded");
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

// Batch-1 classification and decode steps replay captured CUDA graphs
// (model/gpt2_graphs.cpp): the eager path's kernels on the same buffers,
// so the logits must equal the eager ones bit for bit, replay after replay,
// with new tokens, a new pooled position and a new length each time.
TEST_F(CudaModel, GraphReplaysEqualTheEagerPathBitForBit) {
  auto same_bits = [](const Tensor& a, const Tensor& b) {
    const Tensor x = host(a), y = host(b);
    return x.nbytes() == y.nbytes() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
  };
  std::vector<std::vector<int32_t>> texts1;
  for (int64_t n : {12, 12, 40, 1, 20}) {
    std::vector<int32_t> s;
    for (int64_t t = 0; t < n; ++t) s.push_back(static_cast<int32_t>((t * 31 + n * 7 + texts1.size() * 5) % 999));
    texts1.push_back(s);
  }
  texts1.push_back({5, 999, 7, 999, 8, 999, 999, 3, 999, 999, 999, 999});  // pooled at 7, not 11
  const Checkpoint src = make_synthetic_checkpoint(small_config(), ModelKind::SequenceClassification, 7);
  for (const std::string method : {"f32", "nf4", "llm-int8"}) {
    const Checkpoint ck = variant(src, method);
    for (DType dt : {DType::F16, DType::BF16}) {
      auto model = GPT2Model::from_checkpoint(ck, {Device::CUDA, dt});
      const std::string what = fmt::format("{} {}", method, dtype_name(dt));
      std::vector<Tensor> eager, graphed;
      set_cuda_graphs_enabled(false);
      for (const auto& t : texts1) eager.push_back(host(model->class_logits(TokenBatch::from_sequences({t}, 999))));
      set_cuda_graphs_enabled(true);
      const uint64_t before = device_graph_launches();
      for (int pass = 0; pass < 2; ++pass)
        for (size_t i = 0; i < texts1.size(); ++i) {
          const Tensor got = model->class_logits(TokenBatch::from_sequences({texts1[i]}, 999));
          EXPECT_TRUE(same_bits(got, eager[i])) << what << " text " << i << " pass " << pass;
        }
      // Every call after a length bucket's first is a replay (3 buckets: 8
      // for 1 token, 32 for 12 and 20, 64 for 40; 12 calls).
      EXPECT_EQ(device_graph_launches() - before, 9u) << what;
    }
  }

  GPT2Config c = small_config();
  c.architectures = {"GPT2LMHeadModel"};
  c.id2label.clear();
  const Checkpoint lm = make_synthetic_checkpoint(c, ModelKind::CausalLM, 9);
  const std::vector<int32_t> prompt{5, 17, 300, 42, 7};
  for (DType dt : {DType::F16, DType::BF16}) {
    auto model = GPT2Model::from_checkpoint(lm, {Device::CUDA, dt});
    std::vector<std::vector<Tensor>> steps(2);
    for (int graphs = 0; graphs < 2; ++graphs) {
      set_cuda_graphs_enabled(graphs == 1);
      const uint64_t before = device_graph_launches();
      KVCache cache = model->new_cache(1, 32);
      (void)model->hidden_states(TokenBatch{1, 5, prompt, {5}}, &cache);
      for (int32_t id : {9, 400, 9, 998, 0, 123}) steps[graphs].push_back(model->decode_step(id, cache));
      EXPECT_EQ(cache.length, 11);
      EXPECT_EQ(device_graph_launches() - before, graphs == 1 ? 5u : 0u) << dtype_name(dt);
    }
    for (size_t i = 0; i < steps[0].size(); ++i)
      EXPECT_TRUE(same_bits(steps[1][i], steps[0][i])) << dtype_name(dt) << " step " << i;
    GenerateOptions o;
    o.max_new_tokens = 20;
    set_cuda_graphs_enabled(false);
    const auto eager_ids = generate(*model, prompt, o);
    set_cuda_graphs_enabled(true);
    EXPECT_EQ(generate(*model, prompt, o), eager_ids) << dtype_name(dt);
  }
  // A bad id on the graph path is the same error, and the graph still replays.
  auto model = GPT2Model::from_checkpoint(lm, {Device::CUDA, DType::F16});
  KVCache cache = model->new_cache(1, 16);
  (void)model->hidden_states(TokenBatch{1, 5, prompt, {5}}, &cache);
  (void)model->decode_step(3, cache);
  EXPECT_THROW((void)model->decode_step(1000, cache), Error);
  EXPECT_EQ(cache.length, 6);
  EXPECT_TRUE(std::isfinite(model->decode_step(4, cache).data<float>()[0]));
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

// The device holds exactly the bytes gpt2q accounts for: the CPU model of the
// same checkpoint (for a 16-bit placement of an fp32 checkpoint: of the
// checkpoint cast to that dtype), and allocates exactly those (but for
// double quant's offsets, below). No second (16-bit) bias copy, no padding.
TEST_F(CudaModel, WeightsOnTheDeviceAreTheCpusAccounting) {
  const Checkpoint src = make_synthetic_checkpoint(small_config(), ModelKind::SequenceClassification, 7);
  for (const std::string method : {"f32", "int8-tensor", "llm-int8", "nf4"})
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      const Checkpoint ck = variant(src, method);
      size_t want = GPT2Model::from_checkpoint(ck)->total_weight_bytes();
      if (method == "f32" && dt != DType::F32) {
        quant::QuantizeOptions o;
        o.method = dt == DType::F16 ? "fp16" : "bf16";
        want = GPT2Model::from_checkpoint(quant::quantize_checkpoint(src, o).checkpoint)->total_weight_bytes();
      }
      device_synchronize(Device::CUDA);
      const size_t before = device_memory_stats(Device::CUDA).used;
      auto model = GPT2Model::from_checkpoint(ck, {Device::CUDA, dt});
      device_synchronize(Device::CUDA);
      const size_t allocated = device_memory_stats(Device::CUDA).used - before;
      EXPECT_EQ(model->total_weight_bytes(), want) << method << " " << dtype_name(dt);
      // Double quant's nested offset (one float per quantized linear, a
      // tensor in bitsandbytes' state and in the accounting) travels as a
      // kernel parameter, not in device memory (device run 8).
      const size_t offsets = method == "nf4" ? sizeof(float) * 4 * static_cast<size_t>(small_config().n_layer) : 0;
      EXPECT_EQ(allocated + offsets, want) << method << " " << dtype_name(dt);
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
