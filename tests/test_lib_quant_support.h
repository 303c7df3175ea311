#pragma once
// Shared by the quantized-checkpoint tests: small synthetic checkpoints, a
// token batch, and the independent reference the quantized models are
// compared with.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "core/half.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "quant/checkpoint_quantizer.h"
#include "quant/quantized_checkpoint.h"
#include "support/test_env.h"

// The reference formulas below round once per operation, as the formats are
// defined (docs/quantization.md); GCC would otherwise fuse a * b + c.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace gpt2q::test {

// n_embd 96 puts 4-bit blocks of 64 across weight rows (in % 64 != 0 for
// c_attn / c_fc), so the loader and the reference kernels see that layout too.
inline GPT2Config small_quant_config(int64_t n_embd = 128) {
  GPT2Config c;
  c.vocab_size = 500;
  c.n_positions = 32;
  c.n_embd = n_embd;
  c.n_layer = 2;
  c.n_head = 4;
  c.architectures = {"GPT2LMHeadModel"};
  return c;
}

// A small model over GPT-2's own vocabulary, so the CLI can run it with the real
// tokenizer; classifiers get AG News' four labels.
inline GPT2Config gpt2_vocab_config(ModelKind kind) {
  GPT2Config c;
  c.vocab_size = 50257;  // the GPT-2 tokenizer's
  c.n_positions = 64;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 2;
  if (kind == ModelKind::SequenceClassification) {
    c.architectures = {"GPT2ForSequenceClassification"};
    c.id2label = {"World", "Sports", "Business", "Sci/Tech"};
    c.pad_token_id = 50256;
  } else {
    c.architectures = {"GPT2LMHeadModel"};
  }
  return c;
}

// A checkpoint directory (fp32, transformers' layout) with synthetic weights.
inline std::filesystem::path write_small_checkpoint(const std::string& tag, const GPT2Config& c,
                                                    ModelKind kind = ModelKind::CausalLM, uint64_t seed = 7) {
  Checkpoint ck = make_synthetic_checkpoint(c, kind, seed);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& s : expected_tensors(c, kind)) tensors.emplace_back(s.name, ck.tensors.at(s.name));
  const auto dir = temp_dir(tag) / "model";
  save_checkpoint(dir, c, kind, tensors);
  return dir;
}

inline TokenBatch small_batch(const GPT2Config& c) {
  std::vector<std::vector<int32_t>> seqs;
  uint64_t s = 12345;
  for (int b = 0; b < 3; ++b) {
    std::vector<int32_t> ids;
    for (int t = 0; t < 10 - 3 * b; ++t) ids.push_back(static_cast<int32_t>((s = splitmix64(s)) % c.vocab_size));
    seqs.push_back(ids);
  }
  return TokenBatch::from_sequences(seqs, 0);
}

inline bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Reads the raw stored tensors of a quantized weight W ([out, in]) and
// dequantizes them with scalar code written here from the documented layout
// (not with src/quant's reader), so a layout bug there cannot hide.
inline std::vector<float> dequantize_stored(const Checkpoint& q, const std::string& W, int64_t out, int64_t in) {
  const std::string M = W.substr(0, W.size() - 7);
  const int64_t n = out * in;
  std::vector<float> w(static_cast<size_t>(n));
  if (!q.has(W) && q.has(M + ".qweight")) {
    // GPTQ's layout: the codes of each output column o as one bit stream
    // along the input dimension (code i at bits i·bits ...), in words
    // qweight[r, o]; zero points − 1 likewise along o in qzeros[g, :].
    const int bits = q.quantization_config.at("bits").get<int>();
    const auto* qw = static_cast<const uint32_t*>(q.get(M + ".qweight").raw());
    const auto* qz = static_cast<const uint32_t*>(q.get(M + ".qzeros").raw());
    const auto* sc = static_cast<const uint16_t*>(q.get(M + ".scales").raw());
    const auto* gi = static_cast<const int32_t*>(q.get(M + ".g_idx").raw());
    auto bit_at = [](const uint32_t* words, int64_t stride, int64_t b) { return (words[(b / 32) * stride] >> (b % 32)) & 1u; };
    auto code_at = [&](const uint32_t* words, int64_t stride, int64_t k) {
      uint32_t v = 0;
      for (int t = 0; t < bits; ++t) v |= bit_at(words, stride, k * bits + t) << t;
      return static_cast<int32_t>(v);
    };
    const int64_t zwords = out * bits / 32;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        const int64_t g = gi[i];
        const int32_t zero = code_at(qz + g * zwords, 1, o) + 1;
        w[o * in + i] = half_to_float(sc[g * out + o]) * static_cast<float>(code_at(qw + o, out, i) - zero);
      }
    return w;
  }
  const Tensor& stored = q.get(W);
  if (stored.dtype() == DType::I8) {
    const int8_t* c = static_cast<const int8_t*>(stored.raw());
    if (q.has(M + ".SCB")) {  // LLM.int8: CB · SCB / 127 as bnb's int8_vectorwise_dequant
      const float* scb = q.get(M + ".SCB").data<float>();
      for (int64_t j = 0; j < out; ++j)
        for (int64_t k = 0; k < in; ++k) w[j * in + k] = (static_cast<float>(c[j * in + k]) * scb[j]) * (1.0f / 127.0f);
      return w;
    }
    const Tensor& scale = q.get(M + ".weight_scale");
    const bool per_row = scale.numel() == out && out > 1;
    for (int64_t j = 0; j < out; ++j) {
      const int64_t g = per_row ? j : 0;
      const int32_t zp = q.has(M + ".weight_zero_point") ? q.get(M + ".weight_zero_point").data<int32_t>()[g] : 0;
      for (int64_t k = 0; k < in; ++k)
        w[j * in + k] = static_cast<float>(static_cast<int32_t>(c[j * in + k]) - zp) * scale.data<float>()[g];
    }
    return w;
  }
  // 4-bit: two codes a byte, element 2i in the high nibble.
  std::string qs_name = W + ".quant_state.bitsandbytes__nf4";
  if (!q.has(qs_name)) qs_name = W + ".quant_state.bitsandbytes__fp4";
  const Tensor& qs_t = q.get(qs_name);
  const auto qs = nlohmann::json::parse(std::string(static_cast<const char*>(qs_t.raw()), qs_t.nbytes()));
  const int64_t bs = qs["blocksize"].get<int64_t>();
  const float* map = q.get(W + ".quant_map").data<float>();
  const uint8_t* packed = static_cast<const uint8_t*>(stored.raw());
  std::vector<float> absmax(static_cast<size_t>((n + bs - 1) / bs));
  if (qs.contains("nested_offset")) {
    const uint8_t* codes = static_cast<const uint8_t*>(q.get(W + ".absmax").raw());
    const float* state2 = q.get(W + ".nested_absmax").data<float>();
    const float* nmap = q.get(W + ".nested_quant_map").data<float>();
    const float offset = qs["nested_offset"].get<float>();
    for (size_t b = 0; b < absmax.size(); ++b) absmax[b] = nmap[codes[b]] * state2[b / 256] + offset;
  } else {
    const float* a = q.get(W + ".absmax").data<float>();
    absmax.assign(a, a + absmax.size());
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t code = (i % 2 == 0) ? packed[i / 2] >> 4 : packed[i / 2] & 0xf;
    w[i] = map[code] * absmax[i / bs];
  }
  return w;
}

// The reference for a quantized checkpoint: a plain fp32 checkpoint holding
// every tensor as the quantized model sees it: kept tensors converted from
// their stored dtype, quantized weights dequantized (dequantize_stored) and
// transposed back to Conv1D [in, out] where GPT-2 stores them so.
inline Checkpoint dequantized_reference(const Checkpoint& q) {
  Checkpoint ref;
  ref.dir = q.dir;
  ref.config = q.config;
  ref.config.raw.erase("quantization_config");
  ref.kind = q.kind;
  std::vector<TensorSpec> specs = expected_tensors(q.config, q.kind);
  if (q.has("lm_head.weight")) specs.push_back({"lm_head.weight", {q.config.vocab_size, q.config.n_embd}, "", ""});
  for (const auto& s : specs) {
    if (!q.quantized_weights.count(s.name)) {
      ref.tensors[s.name] = to_f32(q.get(s.name)).clone();
      continue;
    }
    const bool conv1d = s.name.find(".attn.") != std::string::npos || s.name.find(".mlp.") != std::string::npos;
    const int64_t out = conv1d ? s.shape[1] : s.shape[0], in = conv1d ? s.shape[0] : s.shape[1];
    const std::vector<float> w = dequantize_stored(q, s.name, out, in);
    Tensor t = Tensor::empty(s.shape, DType::F32);
    float* d = t.data<float>();
    for (int64_t j = 0; j < out; ++j)
      for (int64_t k = 0; k < in; ++k) d[conv1d ? k * out + j : j * in + k] = w[j * in + k];
    ref.tensors[s.name] = t;
  }
  for (const auto& [n, t] : ref.tensors) ref.source[n] = "reference";
  return ref;
}

inline float max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.data<float>()[i] - b.data<float>()[i]));
  return m;
}

inline float max_abs(const Tensor& a) {
  float m = 0;
  for (float v : a.span<float>()) m = std::max(m, std::abs(v));
  return m;
}

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace gpt2q::test
