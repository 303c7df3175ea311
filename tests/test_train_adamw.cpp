// The optimizer side of the trainer against PyTorch (fixtures from
// tools/make_adamw_fixtures.py): 5 AdamW steps with HF's linear warmup
// schedule reproduce torch.optim.AdamW's weights and moments bit for bit;
// the schedule equals transformers' get_linear_schedule_with_warmup; global
// norm clipping equals torch.nn.utils.clip_grad_norm_; the trainer's flat
// buffers give the tensor-by-tensor results bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "io/safetensors.h"
#include "ops/ops_backward.h"
#include "support/test_env.h"
#include "train/adamw.h"
#include "train/grad_clip.h"
#include "train/lr_schedule.h"

using namespace gpt2q;
using namespace gpt2q::train;
namespace fs = std::filesystem;

namespace {

fs::path fixtures() { return test::fixtures_dir() / "train_opt"; }

const Tensor& get(const SafetensorsFile& f, const std::string& name) {
  auto it = f.tensors.find(name);
  if (it == f.tensors.end()) throw std::runtime_error("fixture lacks " + name);
  return it->second;
}

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// Distance in units in the last place between two finite floats of one sign.
int64_t ulps(float a, float b) { return std::llabs(static_cast<int64_t>(bits(a)) - static_cast<int64_t>(bits(b))); }

void expect_bit_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  auto g = got.span<const float>();
  auto w = want.span<const float>();
  int64_t differ = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (bits(g[i]) != bits(w[i])) {
      if (differ++ < 3) ADD_FAILURE() << what << "[" << i << "]: " << g[i] << " vs torch " << w[i];
    }
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << g.size() << " elements differ";
}

struct AdamwFixture {
  SafetensorsFile file = SafetensorsFile::open(fixtures() / "adamw.safetensors");
  nlohmann::json names = nlohmann::json::parse(file.metadata.at("names"));
  nlohmann::json decay = nlohmann::json::parse(file.metadata.at("decay"));
  int steps = std::stoi(file.metadata.at("steps"));
  double lr = std::stod(file.metadata.at("lr"));
  double weight_decay = std::stod(file.metadata.at("weight_decay"));
  int64_t warmup = std::stoll(file.metadata.at("warmup"));
  int64_t total = std::stoll(file.metadata.at("total"));

  std::vector<Parameter> params() const {
    std::vector<Parameter> ps;
    for (size_t i = 0; i < names.size(); ++i) {
      Parameter p;
      p.name = names[i].get<std::string>();
      p.value = get(file, "init/" + p.name).clone();
      p.grad = Tensor::empty(p.value.shape(), DType::F32);
      p.decay = decay[i].get<bool>();
      ps.push_back(std::move(p));
    }
    return ps;
  }
};

TEST(AdamW, FiveStepsWithScheduleEqualTorchBitForBit) {
  AdamwFixture fx;
  auto params = fx.params();
  AdamWOptions opts;
  opts.weight_decay = fx.weight_decay;
  AdamW opt(params, opts);
  auto torch_lr = get(fx.file, "lr").span<const double>();
  ASSERT_EQ(static_cast<int>(torch_lr.size()), fx.steps);
  for (int step = 0; step < fx.steps; ++step) {
    for (auto& p : params) {
      auto g = get(fx.file, "grad/" + std::to_string(step) + "/" + p.name);
      std::memcpy(p.grad.raw(), g.raw(), g.nbytes());
    }
    const double lr = linear_warmup_lr(fx.lr, step, fx.warmup, fx.total);
    EXPECT_EQ(lr, torch_lr[step]) << "step " << step;
    opt.step(params, lr);
    for (auto& p : params)
      expect_bit_equal(p.value, get(fx.file, "param/" + std::to_string(step) + "/" + p.name),
                       "step " + std::to_string(step) + " " + p.name);
  }
  EXPECT_EQ(opt.steps(), fx.steps);
  for (size_t i = 0; i < params.size(); ++i) {
    expect_bit_equal(opt.exp_avg()[i], get(fx.file, "exp_avg/" + params[i].name), "exp_avg " + params[i].name);
    expect_bit_equal(opt.exp_avg_sq()[i], get(fx.file, "exp_avg_sq/" + params[i].name), "exp_avg_sq " + params[i].name);
  }
}

TEST(AdamW, WeightDecayOnlyTouchesDecayParameters) {
  // Zero gradients: Adam's update is 0 / (0 + eps) = 0, so only decay moves weights.
  std::vector<Parameter> ps(2);
  for (int i = 0; i < 2; ++i) {
    ps[i].name = i ? "b" : "w";
    ps[i].value = Tensor::from_vector<float>({1.0f, -2.0f}, {2});
    ps[i].grad = Tensor::empty({2}, DType::F32);
    ps[i].decay = i == 0;
  }
  AdamWOptions opts;
  opts.weight_decay = 0.5;
  AdamW opt(ps, opts);
  opt.step(ps, 0.1);
  EXPECT_EQ(ps[0].value.span<float>()[0], 1.0f * static_cast<float>(1 - 0.1 * 0.5));
  EXPECT_EQ(ps[0].value.span<float>()[1], -2.0f * static_cast<float>(1 - 0.1 * 0.5));
  EXPECT_EQ(ps[1].value.span<float>()[0], 1.0f);
  EXPECT_EQ(ps[1].value.span<float>()[1], -2.0f);
}

// The vectorised, multi-threaded step against the scalar reference, on random
// data of odd sizes (vector bodies, scalar tails, tensors smaller than one
// vector, chunk boundaries), with and without weight decay, over several
// steps so that the moments carry history: bit for bit.
std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  // A few exact zeros and tiny values, where sqrt(v) + eps matters.
  for (size_t i = 0; i < n; i += 97) v[i] = 0.0f;
  for (size_t i = 13; i < n; i += 101) v[i] = scale * 1e-30f;
  return v;
}

TEST(AdamW, FastStepEqualsScalarReferenceBitForBit) {
  std::mt19937 rng(1234);
  // 1..7: shorter than a vector; 32768 ± 1, 3 * 32768 + 5: around the chunk
  // size; 150001: enough chunks that the threads share the work.
  const std::vector<size_t> sizes = {1, 3, 7, 8, 9, 17, 1023, 32767, 32768, 32769, 3 * 32768 + 5, 150001, 5};
  std::vector<Parameter> fast;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Parameter p;
    p.name = "t" + std::to_string(i);
    p.value = Tensor::from_vector(random_floats(rng, sizes[i], 0.05f), {static_cast<int64_t>(sizes[i])});
    p.grad = Tensor::empty(p.value.shape(), DType::F32);
    p.decay = i % 2 == 0;
    fast.push_back(std::move(p));
  }
  std::vector<Tensor> ref_p, ref_m, ref_v;
  for (const auto& p : fast) {
    ref_p.push_back(p.value.clone());
    ref_m.push_back(Tensor::empty(p.value.shape(), DType::F32));
    ref_v.push_back(Tensor::empty(p.value.shape(), DType::F32));
  }
  AdamWOptions opts;
  opts.weight_decay = 0.01;
  AdamW opt(fast, opts);
  for (int step = 1; step <= 4; ++step) {
    const double lr = 1e-3 / step;
    for (size_t i = 0; i < fast.size(); ++i) {
      const auto g = random_floats(rng, sizes[i], step == 2 ? 1e-6f : 1e-2f);
      std::copy(g.begin(), g.end(), fast[i].grad.span<float>().begin());
      adamw_update_reference(ref_p[i].span<float>(), g, ref_m[i].span<float>(), ref_v[i].span<float>(), step, lr,
                             fast[i].decay ? opts.weight_decay : 0.0, opts);
    }
    opt.step(fast, lr);
    for (size_t i = 0; i < fast.size(); ++i) {
      const std::string what = "step " + std::to_string(step) + " " + fast[i].name;
      expect_bit_equal(fast[i].value, ref_p[i], what + " param");
      expect_bit_equal(opt.exp_avg()[i], ref_m[i], what + " exp_avg");
      expect_bit_equal(opt.exp_avg_sq()[i], ref_v[i], what + " exp_avg_sq");
    }
  }
  // The single-tensor entry point too.
  auto p = random_floats(rng, 1001, 0.05f), g = random_floats(rng, 1001, 1e-2f);
  auto m = random_floats(rng, 1001, 1e-3f), v = random_floats(rng, 1001, 1e-3f);
  for (auto& x : v) x = x * x;
  auto p2 = p, m2 = m, v2 = v;
  adamw_update(p, g, m, v, 7, 3e-4, 0.1, opts);
  adamw_update_reference(p2, g, m2, v2, 7, 3e-4, 0.1, opts);
  for (size_t i = 0; i < p.size(); ++i) {
    ASSERT_EQ(bits(p[i]), bits(p2[i])) << i;
    ASSERT_EQ(bits(m[i]), bits(m2[i])) << i;
    ASSERT_EQ(bits(v[i]), bits(v2[i])) << i;
  }
}

TEST(LinearSchedule, EqualsTransformers) {
  auto j = nlohmann::json::parse(read_file(fixtures() / "schedule.json"));
  int cases = 0;
  for (const auto& c : j["cases"]) {
    const double base = c["base_lr"].get<double>();
    const int64_t warmup = c["warmup"].get<int64_t>(), total = c["total"].get<int64_t>();
    const auto& want = c["lr_at_step"];
    for (size_t k = 0; k < want.size(); ++k) {
      const double w = std::strtod(want[k].get<std::string>().c_str(), nullptr);
      EXPECT_EQ(linear_warmup_lr(base, static_cast<int64_t>(k), warmup, total), w)
          << "warmup " << warmup << " total " << total << " step " << k;
    }
    ++cases;
  }
  EXPECT_EQ(cases, 5);
}

TEST(GradClip, EqualsTorchClipGradNorm) {
  auto f = SafetensorsFile::open(fixtures() / "clip.safetensors");
  const int n_tensors = std::stoi(f.metadata.at("tensors"));
  for (int c = 0; c < 2; ++c) {
    const std::string pre = std::to_string(c) + "/";
    std::vector<Parameter> ps(n_tensors);
    for (int i = 0; i < n_tensors; ++i) {
      ps[i].grad = get(f, pre + "grad/" + std::to_string(i)).clone();
      ps[i].value = Tensor::empty(ps[i].grad.shape(), DType::F32);
    }
    const double max_norm = get(f, pre + "max_norm").span<const double>()[0];
    const float torch_total = get(f, pre + "total_norm").span<const float>()[0];
    const float total = clip_grad_norm(ps, max_norm);
    // torch reduces in float32 in its own order; ours is double then rounded.
    EXPECT_LE(ulps(total, torch_total), 2) << total << " vs torch " << torch_total;
    const bool clipped = torch_total > max_norm;
    EXPECT_EQ(clipped, c == 0);
    for (int i = 0; i < n_tensors; ++i) {
      auto got = ps[i].grad.span<const float>();
      auto want = get(f, pre + "clipped/" + std::to_string(i)).span<const float>();
      auto orig = get(f, pre + "grad/" + std::to_string(i)).span<const float>();
      for (size_t k = 0; k < got.size(); ++k) {
        if (!clipped) {
          EXPECT_EQ(bits(got[k]), bits(orig[k]));  // multiplied by exactly 1
        }
        EXPECT_LE(ulps(got[k], want[k]), 2) << "case " << c << " tensor " << i << "[" << k << "]";
      }
    }
  }
}

TEST(GradClip, NoClippingWhenMaxNormIsZeroButNormIsReported) {
  std::vector<Parameter> ps(1);
  ps[0].grad = Tensor::from_vector<float>({3.0f, 4.0f}, {2});
  EXPECT_EQ(clip_grad_norm(ps, 0.0), 5.0f);
  EXPECT_EQ(ps[0].grad.span<float>()[0], 3.0f);
}

}  // namespace

// The flat form the trainer uses (TrainableGPT2's one buffer for values and
// one for gradients, AdamW's moments laid out alike, ops::clip_grad_norm
// over segments) against the tensor-by-tensor forms above, bit for bit.
namespace {

GPT2Config flat_test_config() {
  GPT2Config c;
  c.vocab_size = 50;
  c.n_positions = 16;
  c.n_embd = 24;
  c.n_layer = 2;
  c.n_head = 3;
  return c;
}

// Seeded gradients in the model's flat buffer (gaps stay zero).
void fill_grads(TrainableGPT2& m, uint64_t seed) {
  std::mt19937_64 g(seed);
  for (Parameter& p : m.parameters())
    for (float& v : p.grad.span<float>()) v = static_cast<float>((g() >> 40) * 0x1p-24) - 0.5f;
}

std::vector<Parameter> clones(const std::vector<Parameter>& ps) {
  std::vector<Parameter> out;
  for (const Parameter& p : ps) out.push_back({p.name, p.value.clone(), p.grad.clone(), p.decay, 0});
  return out;
}

}  // namespace

TEST(FlatParameters, ValuesAndGradsViewOneBufferEachDecayingFirst) {
  TrainableGPT2 m = TrainableGPT2::init(flat_test_config(), Task::Classify, 3, 1);
  const FlatLayout& l = m.layout();
  EXPECT_EQ(m.flat_values().numel(), l.total);
  EXPECT_EQ(m.flat_grads().numel(), l.total);
  ASSERT_EQ(m.grad_segments().size(), m.parameters().size());
  int64_t elems = 0;
  for (size_t i = 0; i < m.parameters().size(); ++i) {
    const Parameter& p = m.parameters()[i];
    SCOPED_TRACE(p.name);
    EXPECT_EQ(p.offset % FlatLayout::kAlign, 0);
    EXPECT_EQ(p.offset < l.decay_end, p.decay);
    EXPECT_EQ(p.value.storage(), m.flat_values().storage());
    EXPECT_EQ(p.grad.storage(), m.flat_grads().storage());
    EXPECT_EQ(p.value.offset(), static_cast<size_t>(p.offset) * sizeof(float));
    EXPECT_EQ(m.grad_segments()[i].offset, p.offset);
    EXPECT_EQ(m.grad_segments()[i].numel, p.value.numel());
    elems += p.value.numel();
  }
  EXPECT_LT(l.total - elems, FlatLayout::kAlign * static_cast<int64_t>(m.parameters().size()));
  // zero_grad clears the whole buffer.
  fill_grads(m, 3);
  m.zero_grad();
  for (float g : m.flat_grads().span<const float>()) ASSERT_EQ(g, 0.0f);
}

TEST(FlatParameters, ClipOverTheFlatBufferEqualsTensorByTensorBitForBit) {
  for (double max_norm : {0.0, 0.5, 1e6}) {
    TrainableGPT2 m = TrainableGPT2::init(flat_test_config(), Task::LM, 0, 2);
    fill_grads(m, 9);
    std::vector<Parameter> ref = clones(m.parameters());
    Tensor again = m.flat_grads().clone();
    const float want = clip_grad_norm(ref, max_norm);
    EXPECT_EQ(bits(clip_grad_norm(m, max_norm)), bits(want)) << max_norm;
    const backend::GradClip r = ops::reference::clip_grad_norm(again, m.grad_segments(), max_norm);
    EXPECT_EQ(bits(r.total_norm), bits(want));
    for (size_t i = 0; i < ref.size(); ++i) {
      expect_bit_equal(m.parameters()[i].grad, ref[i].grad, "clipped " + ref[i].name);
      const Tensor view = Tensor::from_storage(again.storage(), m.parameters()[i].grad.offset(),
                                               ref[i].grad.shape(), DType::F32);
      expect_bit_equal(view, ref[i].grad, "reference-clipped " + ref[i].name);
    }
  }
  Tensor flat = Tensor::empty({10}, DType::F32);
  const backend::GradSegment outside[] = {{4, 7}};
  EXPECT_THROW(ops::clip_grad_norm(flat, outside, 1.0), Error);
}

TEST(FlatParameters, AdamWOverTheFlatBuffersEqualsPerTensorAdamWBitForBit) {
  TrainableGPT2 m = TrainableGPT2::init(flat_test_config(), Task::Classify, 4, 5);
  std::vector<Parameter> ref = clones(m.parameters());
  AdamWOptions o;
  o.weight_decay = 0.01;
  AdamW flat(m, o), per_tensor(ref, o);
  for (int step = 0; step < 3; ++step) {
    fill_grads(m, 20 + static_cast<uint64_t>(step));
    for (size_t i = 0; i < ref.size(); ++i) ref[i].grad = m.parameters()[i].grad.clone();
    flat.step(m.parameters(), 1e-3 * (step + 1));
    per_tensor.step(ref, 1e-3 * (step + 1));
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    expect_bit_equal(m.parameters()[i].value, ref[i].value, "value " + ref[i].name);
    expect_bit_equal(flat.exp_avg()[i], per_tensor.exp_avg()[i], "exp_avg " + ref[i].name);
    expect_bit_equal(flat.exp_avg_sq()[i], per_tensor.exp_avg_sq()[i], "exp_avg_sq " + ref[i].name);
  }
}
