// The trainer on CUDA (TrainableGPT2 on Device::CUDA: every step of the pass
// an op with a CUDA kernel, parameters, gradients and AdamW moments in flat
// device buffers) against the same trainer on the CPU, which the train
// tests hold to PyTorch:
//   - one forward + backward: the loss within 1e-6 and every parameter's
//     gradient within 1e-5 relative (issue 13's bound). Both are fp32; the
//     products run on cuBLASLt without TF32 and the reductions (LayerNorm,
//     softmax, cross entropy) in double on both devices, so only the
//     summation order of the fp32 products differs: ~1e-7 relative each,
//     a few of them in a row;
//   - five full steps (clipping, AdamW with weight decay, dropout on): the
//     weights within 1e-5 and the moments within 1e-4 relative (AdamW's
//     m / sqrt(v) passes the gradients' differences on at about their size),
//     but for the key bias, whose gradient is rounding noise (is_qkv_bias):
//     checked to be noise, then its weights within 5 · lr;
//   - clipping over the flat buffer: the norm within 1e-6 relative;
//   - an interrupted and resumed run on the GPU ends with the bytes of an
//     uninterrupted one (every GPU reduction has a fixed order).
// Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/device_memory.h"
#include "core/file_util.h"
#include "ops/ops_backward.h"
#include "support/test_env.h"
#include "train/adamw.h"
#include "train/grad_clip.h"
#include "train/trainer.h"

using namespace gpt2q;
using namespace gpt2q::train;
namespace fs = std::filesystem;

namespace {

class CudaTrainer : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda_device_usable(&why)) GTEST_SKIP() << "no usable CUDA device (" << why << "): CUDA tests not run";
  }
};

GPT2Config tiny_config() {
  GPT2Config c;
  c.vocab_size = 96;
  c.n_positions = 32;
  c.n_embd = 48;
  c.n_layer = 2;
  c.n_head = 4;
  c.id2label = {"a", "b", "c"};
  c.pad_token_id = 0;
  c.embd_pdrop = c.attn_pdrop = c.resid_pdrop = 0.1;
  return c;
}

// The tiny geometry with GPT-2's head size (64): under bf16 its attention
// runs the flash kernels (backend/cuda/attention_flash_train.cu), which the
// tiny one's head size of 12 does not.
GPT2Config head64_config() {
  GPT2Config c = tiny_config();
  c.n_embd = 128;
  c.n_head = 2;
  return c;
}

// ‖got − want‖ / ‖want‖ over elements [begin, end) (all of them by default).
double rel_error(const Tensor& got, const Tensor& want, size_t begin = 0, size_t end = SIZE_MAX) {
  const Tensor g = to_device(got, Device::CPU), w = to_device(want, Device::CPU);
  double num = 0, den = 0;
  const auto a = g.span<const float>(), b = w.span<const float>();
  for (size_t i = begin; i < std::min(end, a.size()); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double max_abs_diff(const Tensor& got, const Tensor& want, size_t begin, size_t end) {
  const Tensor g = to_device(got, Device::CPU), w = to_device(want, Device::CPU);
  const auto a = g.span<const float>(), b = w.span<const float>();
  double worst = 0;
  for (size_t i = begin; i < end; ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

double norm(const Tensor& t, size_t begin, size_t end) {
  const Tensor h = to_device(t, Device::CPU);
  double s = 0;
  for (size_t i = begin; i < end; ++i) s += static_cast<double>(h.span<const float>()[i]) * h.span<const float>()[i];
  return std::sqrt(s);
}

// The key third of c_attn.bias gets no gradient in exact arithmetic: it adds
// q_i · b_k to every score of row i, and the softmax is invariant to that.
// Its computed gradient is rounding noise, which AdamW turns into steps of
// lr · g / (|g| + eps), a different noise on each device.
bool is_qkv_bias(const std::string& name) { return name.ends_with("attn.c_attn.bias"); }

// A padded batch of seeded ids (lengths 5..16) and its labels.
TokenBatch batch_of(uint64_t seed, std::vector<int32_t>* labels) {
  std::mt19937_64 g(seed);
  std::vector<std::vector<int32_t>> seqs;
  labels->clear();
  for (int b = 0; b < 6; ++b) {
    std::vector<int32_t> s(5 + g() % 12);
    for (int32_t& id : s) id = static_cast<int32_t>(1 + g() % 95);
    seqs.push_back(s);
    labels->push_back(static_cast<int32_t>(g() % 3));
  }
  return TokenBatch::from_sequences(seqs, 0);
}

}  // namespace

TEST_F(CudaTrainer, ForwardBackwardMatchesTheCpu) {
  for (Task task : {Task::Classify, Task::LM}) {
    SCOPED_TRACE(task == Task::LM ? "lm" : "classify");
    const int64_t labels_n = task == Task::Classify ? 3 : 0;
    TrainableGPT2 cpu = TrainableGPT2::init(tiny_config(), task, labels_n, 4);
    TrainableGPT2 gpu = TrainableGPT2::init(tiny_config(), task, labels_n, 4, Device::CUDA);
    EXPECT_EQ(gpu.device(), Device::CUDA);
    std::vector<int32_t> labels;
    const TokenBatch tb = batch_of(11, &labels);
    const std::span<const int32_t> y =
        task == Task::Classify ? std::span<const int32_t>(labels) : std::span<const int32_t>();
    const DropoutContext drop{true, 5, 2, 0};
    const LossValue a = cpu.forward_backward(tb, y, drop), b = gpu.forward_backward(tb, y, drop);
    EXPECT_EQ(a.count, b.count);
    EXPECT_NEAR(b.loss, a.loss, 1e-6 * std::abs(a.loss));
    for (size_t i = 0; i < cpu.parameters().size(); ++i) {
      const std::string& name = cpu.parameters()[i].name;
      EXPECT_LE(rel_error(gpu.parameters()[i].grad, cpu.parameters()[i].grad), 1e-5) << name;
      if (!is_qkv_bias(name)) continue;
      // The key bias's gradient is noise: ≤ 1e-6 of the query and value biases' on both devices.
      const size_t C = static_cast<size_t>(tiny_config().n_embd);
      for (const TrainableGPT2* m : {&cpu, &gpu}) {
        const Tensor& g = m->parameters()[i].grad;
        EXPECT_LE(norm(g, C, 2 * C), 1e-6 * std::hypot(norm(g, 0, C), norm(g, 2 * C, 3 * C))) << name;
      }
    }
    EXPECT_LE(rel_error(gpu.logits(tb), cpu.logits(tb)), 1e-5);
    const LossValue ea = cpu.loss(tb, y), eb = gpu.loss(tb, y);
    EXPECT_NEAR(eb.loss, ea.loss, 1e-6 * std::abs(ea.loss));
  }
}

TEST_F(CudaTrainer, ClipOverTheFlatBufferMatchesTheCpu) {
  TrainableGPT2 cpu = TrainableGPT2::init(tiny_config(), Task::LM, 0, 8);
  TrainableGPT2 gpu = TrainableGPT2::init(tiny_config(), Task::LM, 0, 8, Device::CUDA);
  std::mt19937_64 g(3);
  for (float& v : cpu.flat_grads().span<float>()) v = static_cast<float>((g() >> 40) * 0x1p-24) - 0.5f;
  copy_bytes(gpu.flat_grads().raw(), Device::CUDA, cpu.flat_grads().raw(), Device::CPU, cpu.flat_grads().nbytes());
  const float a = clip_grad_norm(cpu, 0.25), b = clip_grad_norm(gpu, 0.25);
  EXPECT_NEAR(b, a, 1e-6 * a);
  EXPECT_LE(rel_error(gpu.flat_grads(), cpu.flat_grads()), 1e-6);
}

TEST_F(CudaTrainer, FiveStepsMatchTheCpu) {
  TrainableGPT2 cpu = TrainableGPT2::init(tiny_config(), Task::Classify, 3, 6);
  TrainableGPT2 gpu = TrainableGPT2::init(tiny_config(), Task::Classify, 3, 6, Device::CUDA);
  AdamWOptions o;
  o.weight_decay = 0.01;
  AdamW opt_cpu(cpu, o), opt_gpu(gpu, o);
  for (int step = 0; step < 5; ++step) {
    std::vector<int32_t> labels;
    const TokenBatch tb = batch_of(100 + static_cast<uint64_t>(step), &labels);
    const DropoutContext drop{true, 9, static_cast<uint64_t>(step), 0};
    for (auto [m, opt] : {std::pair{&cpu, &opt_cpu}, std::pair{&gpu, &opt_gpu}}) {
      m->zero_grad();
      m->forward_backward(tb, labels, drop);
      clip_grad_norm(*m, 1.0);
      opt->step(m->parameters(), 1e-3);
    }
  }
  for (size_t i = 0; i < cpu.parameters().size(); ++i) {
    const std::string& name = cpu.parameters()[i].name;
    const Tensor &got = gpu.parameters()[i].value, &want = cpu.parameters()[i].value;
    if (is_qkv_bias(name)) {
      // Query and value thirds as every weight; the key third (noise-driven,
      // see is_qkv_bias) within 5 steps of lr of the CPU's.
      const size_t C = static_cast<size_t>(tiny_config().n_embd);
      EXPECT_LE(rel_error(got, want, 0, C), 1e-5) << name;
      EXPECT_LE(rel_error(got, want, 2 * C, 3 * C), 1e-5) << name;
      EXPECT_LE(max_abs_diff(got, want, C, 2 * C), 5 * 1e-3) << name;
    } else {
      EXPECT_LE(rel_error(got, want), 1e-5) << name;
    }
    EXPECT_LE(rel_error(opt_gpu.exp_avg()[i], opt_cpu.exp_avg()[i]), 1e-4) << name;
    EXPECT_LE(rel_error(opt_gpu.exp_avg_sq()[i], opt_cpu.exp_avg_sq()[i]), 1e-4) << name;
  }
}

TEST_F(CudaTrainer, ResumeOnTheGpuEqualsTheUninterruptedRunBitForBit) {
  Examples train, eval;
  std::mt19937_64 g(5);
  for (int i = 0; i < 40; ++i) {
    Example x;
    x.label = i % 3;
    x.ids.resize(3 + g() % 10);
    for (int32_t& id : x.ids) id = static_cast<int32_t>(1 + g() % 95);
    (i < 30 ? train : eval).items.push_back(x);
  }
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 6;  // 5 steps per epoch
  o.lr = 3e-3;
  o.weight_decay = 0.01;
  o.save_every = 3;
  o.seed = 7;
  o.progress = false;
  o.settings = {{"test", "cuda trainer"}};
  for (TrainPrecision precision : {TrainPrecision::fp32, TrainPrecision::bf16}) {
    SCOPED_TRACE(train_precision_name(precision));
    const fs::path dir = test::temp_dir("cuda_trainer_resume");
    const OutputLayout whole{dir / "whole"}, parts{dir / "parts"};
    {
      auto m = TrainableGPT2::init(head64_config(), Task::Classify, 3, 2, Device::CUDA);
      m.set_precision(precision);
      run_training(m, train, eval, o, whole, test::gpt2_tokenizer_dir());
    }
    for (int64_t stop : {4, 0}) {
      auto m = TrainableGPT2::init(head64_config(), Task::Classify, 3, 2, Device::CUDA);
      m.set_precision(precision);
      TrainOptions p = o;
      p.stop_after_steps = stop;
      p.resume = stop == 0;
      run_training(m, train, eval, p, parts, test::gpt2_tokenizer_dir());
    }
    EXPECT_TRUE(read_file(whole.last_dir() / "model.safetensors") ==
                read_file(parts.last_dir() / "model.safetensors"));
    EXPECT_TRUE(read_file(whole.best_dir() / "model.safetensors") ==
                read_file(parts.best_dir() / "model.safetensors"));
    fs::remove_all(dir);
  }
}

// A task the classifier learns only through attention: the label is the
// first token's third of the vocabulary (1-31, 32-63, 64-95); the pooled
// position is the last. Seeded.
std::vector<std::pair<TokenBatch, std::vector<int32_t>>> first_token_task(int batches, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<std::pair<TokenBatch, std::vector<int32_t>>> out;
  for (int i = 0; i < batches; ++i) {
    std::vector<std::vector<int32_t>> seqs;
    std::vector<int32_t> labels;
    for (int b = 0; b < 16; ++b) {
      std::vector<int32_t> s(6 + g() % 11);
      for (int32_t& id : s) id = static_cast<int32_t>(1 + g() % 95);
      seqs.push_back(s);
      labels.push_back(s[0] < 32 ? 0 : s[0] < 64 ? 1 : 2);
    }
    out.emplace_back(TokenBatch::from_sequences(seqs, 0), labels);
  }
  return out;
}

TEST_F(CudaTrainer, Bf16LossCurveFollowsFp32) {
  // Issue 13's bf16 check: 300 steps of a small classifier (dropout 0.1,
  // AdamW, clipping at 1) in fp32 and in bf16 products from the same initial
  // weights, data and dropout masks, twice: the tiny geometry (head size 12:
  // the batched attention) at lr 1e-3, and the tiny geometry with head size
  // 64 (bf16 runs the flash attention) at lr 3e-4 (at 1e-3 its loss spikes,
  // at other steps in each run, and windows compare the spikes' timing). The
  // curves are compared as means over 25-step windows (a single step's loss
  // is noisy in both); the eval accuracy on 600 held-out texts after the
  // last step is within 0.5 pt (3 texts).
  const auto data = first_token_task(300, 21), held_out = first_token_task(38, 22);
  struct Setup {
    const char* name;
    GPT2Config config;
    float lr;
  };
  const Setup setups[] = {{"head size 12", tiny_config(), 1e-3f}, {"head size 64", head64_config(), 3e-4f}};
  for (const Setup& setup : setups) {
    SCOPED_TRACE(setup.name);
    std::vector<double> curve[2];
    int64_t correct[2] = {0, 0}, total = 0;
    for (int k = 0; k < 2; ++k) {
      TrainableGPT2 m = TrainableGPT2::init(setup.config, Task::Classify, 3, 13, Device::CUDA);
      m.set_precision(k == 0 ? TrainPrecision::fp32 : TrainPrecision::bf16);
      AdamW opt(m, AdamWOptions{});
      for (size_t step = 0; step < data.size(); ++step) {
        m.zero_grad();
        curve[k].push_back(m.forward_backward(data[step].first, data[step].second, {true, 3, step, 0}).loss);
        clip_grad_norm(m, 1.0);
        opt.step(m.parameters(), setup.lr);
      }
      total = 0;
      for (const auto& [tb, labels] : held_out) {
        const Tensor logits = to_device(m.logits(tb), Device::CPU);
        for (int64_t b = 0; b < tb.batch; ++b, ++total) {
          const auto row = logits.span<const float>().subspan(static_cast<size_t>(b * 3), 3);
          correct[k] += std::max_element(row.begin(), row.end()) - row.begin() == labels[static_cast<size_t>(b)];
        }
      }
    }
    double worst = 0;
    for (size_t w = 0; w + 25 <= curve[0].size(); w += 25) {
      double a = 0, b = 0;
      for (size_t i = w; i < w + 25; ++i) a += curve[0][i] / 25, b += curve[1][i] / 25;
      worst = std::max(worst, std::abs(b - a) / std::max(a, 0.05));
      EXPECT_LE(std::abs(b - a), 0.1 * std::max(a, 0.05)) << "steps " << w << "-" << w + 24 << ": fp32 " << a
                                                          << ", bf16 " << b;
    }
    const double acc32 = 100.0 * correct[0] / total, acc16 = 100.0 * correct[1] / total;
    std::printf("  %s, 300 steps: first-window loss %.4f, last step fp32 %.4f / bf16 %.4f, worst window %.3g "
                "relative; accuracy fp32 %.2f %%, bf16 %.2f %%\n",
                setup.name, curve[0][0], curve[0].back(), curve[1].back(), worst, acc32, acc16);
    EXPECT_LT(curve[0].back(), 0.5 * curve[0][0]) << "the task was not learned: the comparison says nothing";
    EXPECT_LE(std::abs(acc16 - acc32), 0.5);
  }
}
