#pragma once
// Reading the transformers reference fixtures made by tools/make_fixtures.py
// (tests/fixtures/models/NAME.ref.{safetensors,json}) and comparing gpt2q's
// logits with them. Shared by the test_lib_conformance_* executables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/device_memory.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/gpt2.h"
#include "support/test_env.h"

namespace gpt2q::conformance {

// Tolerances of the conformance claim: fp32 logits within 1e-4 absolute of
// transformers, perplexity within 1e-4 relative. An argmax is only required
// to agree where transformers' top-1/top-2 gap leaves room for that error.
inline constexpr double kLogitTol = 1e-4;
inline constexpr double kPplRelTol = 1e-4;
inline constexpr double kArgmaxGap = 2e-4;

inline std::filesystem::path models_dir() { return test::fixtures_dir() / "models"; }

// The devices the conformance tests run on: the CPU, and CUDA in a CUDA
// build (fp32, the exactness path), whose instances skip where no GPU is.
inline std::vector<Device> test_devices() {
  if (cuda_built()) return {Device::CPU, Device::CUDA};
  return {Device::CPU};
}
inline std::string device_tag(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }
#define GPT2Q_SKIP_WITHOUT_DEVICE(device)                                                              \
  do {                                                                                                 \
    std::string why_;                                                                                  \
    if ((device) == ::gpt2q::Device::CUDA && !::gpt2q::cuda_device_usable(&why_))                      \
      GTEST_SKIP() << "no usable CUDA device (" << why_ << "): the CUDA instance of this test not run"; \
  } while (0)

struct Reference {
  std::string name;
  nlohmann::json info;
  SafetensorsFile file;

  static Reference load(const std::string& name) {
    Reference r;
    r.name = name;
    std::ifstream in(models_dir() / (name + ".ref.json"));
    if (!in) throw std::runtime_error("missing fixture " + (models_dir() / (name + ".ref.json")).string());
    r.info = nlohmann::json::parse(in);
    r.file = SafetensorsFile::open(models_dir() / (name + ".ref.safetensors"));
    return r;
  }
  bool has(const std::string& key) const { return file.tensors.count(key) != 0; }
  const Tensor& tensor(const std::string& key) const {
    auto it = file.tensors.find(key);
    if (it == file.tensors.end()) throw std::runtime_error(name + ": no tensor " + key);
    return it->second;
  }
  std::vector<int64_t> i64(const std::string& key) const {
    auto s = tensor(key).span<const int64_t>();
    return {s.begin(), s.end()};
  }
  std::vector<float> f32(const std::string& key) const {
    auto s = tensor(key).span<const float>();
    return {s.begin(), s.end()};
  }
  std::vector<double> f64(const std::string& key) const {
    auto s = tensor(key).span<const double>();
    return {s.begin(), s.end()};
  }
  int64_t dim(const std::string& key, int i) const { return tensor(key).dim(i); }

  // The padded batch exactly as transformers saw it (right padding).
  TokenBatch batch() const {
    const auto ids = i64("input_ids");
    const auto lengths = i64("lengths");
    const int64_t T = dim("input_ids", 1);
    std::vector<std::vector<int32_t>> seqs;
    for (size_t b = 0; b < lengths.size(); ++b)
      seqs.emplace_back(ids.begin() + b * T, ids.begin() + b * T + lengths[b]);
    return TokenBatch::from_sequences(seqs, info.at("pad_id").get<int32_t>());
  }
  std::vector<int32_t> ids32(const std::string& key) const {
    auto v = i64(key);
    return {v.begin(), v.end()};
  }
};

inline std::vector<int32_t> to_ids(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

// Compares logit rows with the stored summary under `prefix` ("" or "long_").
// row(b, t) returns gpt2q's logits for batch row b, position t (V floats).
inline void expect_logits_match(const Reference& ref, const std::string& prefix,
                                const std::function<std::span<const float>(int64_t, int64_t)>& row) {
  const auto pos = ref.i64(prefix + "pos");
  const auto top_ids = ref.i64(prefix + "topk_ids");
  const auto top_vals = ref.f32(prefix + "topk_values");
  const auto mean = ref.f64(prefix + "logit_mean");
  const auto rms = ref.f64(prefix + "logit_rms");
  const auto sample_ids = ref.i64(prefix + "sample_ids");
  const auto sampled = ref.f32(prefix + "logits_sampled");
  const int64_t P = ref.dim(prefix + "pos", 0), K = ref.dim(prefix + "topk_ids", 1);
  const int64_t S = static_cast<int64_t>(sample_ids.size());
  ASSERT_GT(P, 0);

  double max_sampled = 0, max_top = 0, max_mean = 0, max_rms = 0;
  int argmax_checked = 0, argmax_mismatch = 0;
  std::string first_mismatch;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t b = pos[2 * p], t = pos[2 * p + 1];
    auto logits = row(b, t);
    ASSERT_GT(logits.size(), 0u);
    for (int64_t j = 0; j < S; ++j)
      max_sampled = std::max(max_sampled, std::abs(double(logits[sample_ids[j]]) - sampled[p * S + j]));
    for (int64_t k = 0; k < K; ++k)
      max_top = std::max(max_top, std::abs(double(logits[top_ids[p * K + k]]) - top_vals[p * K + k]));
    double sum = 0, sumsq = 0;
    for (float v : logits) sum += v, sumsq += double(v) * v;
    const double n = static_cast<double>(logits.size());
    max_mean = std::max(max_mean, std::abs(sum / n - mean[p]));
    max_rms = std::max(max_rms, std::abs(std::sqrt(sumsq / n) - rms[p]));
    if (top_vals[p * K] - top_vals[p * K + 1] >= kArgmaxGap) {
      ++argmax_checked;
      // torch.argmax: the first maximum.
      const int64_t ours = std::max_element(logits.begin(), logits.end()) - logits.begin();
      if (ours != top_ids[p * K] && argmax_mismatch++ == 0)
        first_mismatch = "(" + std::to_string(b) + "," + std::to_string(t) + "): gpt2q " + std::to_string(ours) +
                         ", transformers " + std::to_string(top_ids[p * K]);
    }
  }
  EXPECT_LE(max_sampled, kLogitTol) << ref.name << " " << prefix << "logits_sampled, " << P << " positions";
  EXPECT_LE(max_top, kLogitTol) << ref.name << " " << prefix << "top-" << K << " logits";
  // Implied by the element-wise bound: |mean diff| and |RMS diff| <= max |diff|.
  EXPECT_LE(max_mean, kLogitTol) << ref.name << " " << prefix << "mean logit";
  EXPECT_LE(max_rms, kLogitTol) << ref.name << " " << prefix << "RMS logit";
  EXPECT_EQ(argmax_mismatch, 0) << ref.name << " argmax differs at " << argmax_mismatch << " of " << argmax_checked
                                << " positions, first " << first_mismatch;
  EXPECT_GT(argmax_checked, P / 2) << ref.name << ": too few positions with a clear argmax";

  if (ref.has(prefix + "full_pos")) {
    const auto full_pos = ref.i64(prefix + "full_pos");
    const auto full = ref.f32(prefix + "logits_full");
    const int64_t Q = ref.dim(prefix + "full_pos", 0), V = ref.dim(prefix + "logits_full", 1);
    double max_full = 0;
    for (int64_t q = 0; q < Q; ++q) {
      auto logits = row(full_pos[2 * q], full_pos[2 * q + 1]);
      ASSERT_EQ(static_cast<int64_t>(logits.size()), V);
      for (int64_t v = 0; v < V; ++v) max_full = std::max(max_full, std::abs(double(logits[v]) - full[q * V + v]));
    }
    EXPECT_LE(max_full, kLogitTol) << ref.name << " " << prefix << "logits_full (" << Q << " whole rows)";
  }
}

// Row accessor over a [B, T, V] logits tensor.
inline std::function<std::span<const float>(int64_t, int64_t)> rows_of(const Tensor& logits) {
  return [&logits](int64_t b, int64_t t) {
    const int64_t T = logits.dim(1), V = logits.dim(2);
    return std::span<const float>(logits.data<float>() + (b * T + t) * V, static_cast<size_t>(V));
  };
}

// Hidden states [B, T, C] against the stored ones at real (unpadded) positions.
inline double max_hidden_diff(const Reference& ref, const Tensor& hidden) {
  const auto want = ref.f32("hidden");
  const auto lengths = ref.i64("lengths");
  const int64_t T = ref.dim("hidden", 1), C = ref.dim("hidden", 2);
  EXPECT_EQ(hidden.dim(0), static_cast<int64_t>(lengths.size()));
  EXPECT_EQ(hidden.dim(1), T);
  EXPECT_EQ(hidden.dim(2), C);
  const float* got = hidden.data<float>();
  double m = 0;
  for (size_t b = 0; b < lengths.size(); ++b)
    for (int64_t t = 0; t < lengths[b]; ++t)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = (static_cast<int64_t>(b) * T + t) * C + c;
        m = std::max(m, std::abs(double(got[i]) - want[i]));
      }
  return m;
}

inline double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

}  // namespace gpt2q::conformance
