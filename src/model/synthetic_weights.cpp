#include "model/synthetic_weights.h"

#include <cstdio>

#include <fmt/format.h>

namespace gpt2q {

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace {
enum class Role { Weight, LayerNormWeight, Bias };

Role role_of(std::string_view name) {
  bool is_ln = name.find("ln_") != std::string_view::npos;
  bool is_bias = name.ends_with(".bias");
  if (is_ln) return is_bias ? Role::Bias : Role::LayerNormWeight;
  return is_bias ? Role::Bias : Role::Weight;
}

float value_for(Role role, float r) {
  switch (role) {
    case Role::Weight: return r * 0.05f;
    case Role::LayerNormWeight: return 1.0f + r * 0.1f;
    case Role::Bias: return r * 0.02f;
  }
  return 0.0f;
}

Tensor make_tensor(const std::string& name, Shape shape, uint64_t seed) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  float* p = t.data<float>();
  const uint64_t key = fnv1a64(name) ^ seed;
  const Role role = role_of(name);
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t u = splitmix64(key + static_cast<uint64_t>(i)) >> 40;
    float r = static_cast<float>(u) * 0x1p-23f - 1.0f;
    p[i] = value_for(role, r);
  }
  return t;
}
}  // namespace

float synthetic_value(std::string_view name, uint64_t seed, uint64_t index) {
  uint64_t u = splitmix64((fnv1a64(name) ^ seed) + index) >> 40;
  float r = static_cast<float>(u) * 0x1p-23f - 1.0f;
  return value_for(role_of(name), r);
}

GPT2Config geometry_config(std::string_view geometry, std::string_view what) {
  GPT2Config c;  // GPT-2 124M: 768 x 12 layers x 12 heads, vocab 50257, 1024 positions
  if (geometry == "124m" || geometry == "124M") return c;
  int64_t w = 0, l = 0, h = 0;
  char tail = 0;
  std::string g(geometry);
  if (std::sscanf(g.c_str(), "%ldx%ldx%ld%c", &w, &l, &h, &tail) != 3 || w <= 0 || l <= 0 || h <= 0 || w % h != 0)
    fail("{}: expected 124m or WIDTHxLAYERSxHEADS with HEADS dividing WIDTH (e.g. 768x12x12), got '{}'", what, g);
  c.n_embd = w;
  c.n_layer = l;
  c.n_head = h;
  return c;
}

Checkpoint make_synthetic_checkpoint(const GPT2Config& config, ModelKind kind, uint64_t seed) {
  Checkpoint ck;
  ck.config = config;
  ck.kind = kind;
  const int64_t C = config.n_embd, I = config.inner();
  auto add = [&](const std::string& name, Shape shape) {
    ck.tensors[name] = make_tensor(name, std::move(shape), seed);
    ck.source[name] = "synthetic";
  };
  add("wte.weight", {config.vocab_size, C});
  add("wpe.weight", {config.n_positions, C});
  for (int64_t l = 0; l < config.n_layer; ++l) {
    std::string p = fmt::format("h.{}.", l);
    add(p + "ln_1.weight", {C});
    add(p + "ln_1.bias", {C});
    add(p + "attn.c_attn.weight", {C, 3 * C});
    add(p + "attn.c_attn.bias", {3 * C});
    add(p + "attn.c_proj.weight", {C, C});
    add(p + "attn.c_proj.bias", {C});
    add(p + "ln_2.weight", {C});
    add(p + "ln_2.bias", {C});
    add(p + "mlp.c_fc.weight", {C, I});
    add(p + "mlp.c_fc.bias", {I});
    add(p + "mlp.c_proj.weight", {I, C});
    add(p + "mlp.c_proj.bias", {C});
  }
  add("ln_f.weight", {C});
  add("ln_f.bias", {C});
  if (kind == ModelKind::SequenceClassification) {
    GPT2Q_CHECK(config.num_labels() > 0, "classifier config without id2label");
    add("score.weight", {config.num_labels(), C});
  }
  return ck;
}

}  // namespace gpt2q
