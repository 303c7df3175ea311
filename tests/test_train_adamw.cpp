// The optimizer side of the trainer against PyTorch (fixtures from
// tools/make_adamw_fixtures.py): 5 AdamW steps with HF's linear warmup
// schedule reproduce torch.optim.AdamW's weights and moments bit for bit;
// the schedule equals transformers' get_linear_schedule_with_warmup; global
// norm clipping equals torch.nn.utils.clip_grad_norm_.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "io/safetensors.h"
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
