#include "eval/classify.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "io/dataset.h"
#include "model/gpt2.h"
#include "text/tokenizer.h"

namespace gpt2q {

void require_classifier(const GPT2Model& model, const std::filesystem::path& model_dir) {
  if (!model.is_classifier())
    fail("{} is a {}; eval needs GPT2ForSequenceClassification", model_dir.string(), architecture_name(model.kind()));
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) fail("percentile of no values");
  if (!(q >= 0 && q <= 100)) fail("percentile {} outside [0, 100]", q);
  std::sort(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

namespace {
// Padding never reaches a real token (right padding + causal mask), but its
// ids are still embedded, so they must lie inside the vocabulary.
int32_t pad_id_of(const GPT2Config& cfg) {
  if (cfg.pad_token_id) {
    if (*cfg.pad_token_id < 0 || *cfg.pad_token_id >= cfg.vocab_size)
      fail("classify: pad_token_id {} is outside the vocabulary [0, {})", *cfg.pad_token_id, cfg.vocab_size);
    return static_cast<int32_t>(*cfg.pad_token_id);
  }
  // Without a pad id class_logits reads position lengths[b] - 1, so any
  // in-vocabulary filler gives the same result; eos is what HF users set.
  if (cfg.eos_token_id && *cfg.eos_token_id >= 0 && *cfg.eos_token_id < cfg.vocab_size)
    return static_cast<int32_t>(*cfg.eos_token_id);
  return 0;
}

Tensor run_batch(const GPT2Model& model, const std::vector<std::vector<int32_t>>& sequences, size_t begin, size_t end,
                 int32_t pad_id) {
  std::vector<std::vector<int32_t>> chunk(sequences.begin() + begin, sequences.begin() + end);
  return model.class_logits(TokenBatch::from_sequences(chunk, pad_id));
}

}  // namespace

LatencyStats summarize_latency(const std::vector<double>& batch_seconds, const std::vector<int64_t>& batch_sizes) {
  LatencyStats s;
  s.batches = static_cast<int64_t>(batch_seconds.size());
  std::vector<double> per_sample_ms;
  for (size_t i = 0; i < batch_seconds.size(); ++i) {
    s.total_s += batch_seconds[i];
    s.samples += batch_sizes[i];
    per_sample_ms.push_back(1e3 * batch_seconds[i] / static_cast<double>(batch_sizes[i]));
  }
  if (per_sample_ms.empty()) return s;
  s.mean_ms = 1e3 * s.total_s / static_cast<double>(s.samples);
  s.p50_ms = percentile(per_sample_ms, 50);
  s.p90_ms = percentile(per_sample_ms, 90);
  s.p99_ms = percentile(per_sample_ms, 99);
  s.samples_per_s = s.total_s > 0 ? static_cast<double>(s.samples) / s.total_s : 0.0;
  return s;
}

std::vector<std::string> class_names(const GPT2Config& cfg, int64_t k) {
  std::vector<std::string> names;
  for (int64_t c = 0; c < k; ++c)
    names.push_back(c < static_cast<int64_t>(cfg.id2label.size()) ? cfg.id2label[c] : fmt::format("LABEL_{}", c));
  return names;
}

ClassifyResult classify_tokens(const GPT2Model& model, const std::vector<std::vector<int32_t>>& sequences,
                               const ClassifyOptions& opts) {
  if (!model.is_classifier()) fail("classify: the model is a {}, not a classifier", architecture_name(model.kind()));
  const GPT2Config& cfg = model.config();
  if (opts.batch_size < 1) fail("classify: batch size must be at least 1 (got {})", opts.batch_size);
  if (opts.max_length < 1 || opts.max_length > cfg.n_positions)
    fail("classify: max_length must be in [1, n_positions = {}] (got {})", cfg.n_positions, opts.max_length);
  for (size_t i = 0; i < sequences.size(); ++i) {
    const auto& seq = sequences[i];
    if (seq.empty()) fail("classify: sequence {} is empty", i);
    if (static_cast<int64_t>(seq.size()) > opts.max_length)
      fail("classify: sequence {} has {} tokens, more than max_length {}", i, seq.size(), opts.max_length);
    for (int32_t id : seq)
      if (id < 0 || id >= cfg.vocab_size)
        fail("classify: token id {} in sequence {} is outside the vocabulary [0, {})", id, i, cfg.vocab_size);
  }

  ClassifyResult res;
  res.num_labels = model.num_labels();
  const size_t n = sequences.size(), bs = static_cast<size_t>(opts.batch_size);
  const size_t K = static_cast<size_t>(res.num_labels);
  res.predictions.resize(n);
  res.logits.resize(n * K);
  if (n == 0) return res;
  const int32_t pad_id = pad_id_of(cfg);

  if (opts.warmup) run_batch(model, sequences, 0, std::min(bs, n), pad_id);

  std::vector<double> batch_seconds;
  std::vector<int64_t> batch_sizes;
  std::optional<Progress> progress;
  if (opts.progress) progress.emplace(opts.progress_label, static_cast<int64_t>(n), "samples");
  for (size_t b = 0; b < n; b += bs) {
    const size_t e = std::min(b + bs, n);
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor logits = to_device(run_batch(model, sequences, b, e, pad_id), Device::CPU);
    batch_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    batch_sizes.push_back(static_cast<int64_t>(e - b));
    GPT2Q_CHECK(logits.ndim() == 2 && logits.dim(0) == static_cast<int64_t>(e - b) &&
                    logits.dim(1) == static_cast<int64_t>(K),
                "class_logits gave {}", shape_str(logits.shape()));
    const float* lp = logits.data<float>();
    for (size_t r = 0; r < e - b; ++r) {
      const float* row = lp + r * K;
      std::copy(row, row + K, res.logits.begin() + (b + r) * K);
      // std::max_element returns the first maximum: torch.argmax's tie rule.
      res.predictions[b + r] = static_cast<int32_t>(std::max_element(row, row + K) - row);
    }
    if (progress) progress->advance(static_cast<int64_t>(e - b));
  }
  res.latency = summarize_latency(batch_seconds, batch_sizes);
  return res;
}

std::vector<std::vector<int32_t>> tokenize_for_classification(const Tokenizer& tokenizer, const Dataset& data,
                                                              int64_t max_length) {
  if (max_length < 1) fail("max_length must be at least 1 (got {})", max_length);
  const std::string source = data.source.string();
  std::vector<std::vector<int32_t>> out(data.rows.size());
  for (size_t i = 0; i < data.rows.size(); ++i) {
    auto ids = tokenizer.encode(data.rows[i].text, source);
    if (ids.empty()) fail("{}: row {}: the text is empty", source, i + 1);
    if (static_cast<int64_t>(ids.size()) > max_length) ids.resize(static_cast<size_t>(max_length));
    out[i] = std::move(ids);
  }
  return out;
}

EvalResult evaluate_classifier(const GPT2Model& model, const Tokenizer& tokenizer, const Dataset& data,
                               const ClassifyOptions& opts) {
  const int64_t K = model.num_labels();
  const std::string source = data.source.string();
  if (data.rows.empty()) fail("{}: no samples", source);
  std::vector<int32_t> labels;
  labels.reserve(data.rows.size());
  for (size_t i = 0; i < data.rows.size(); ++i) {
    const int32_t y = data.rows[i].label;
    if (y < 0 || y >= K)
      fail("{}: row {}: label {} is outside the model's {} classes [0, {})", source, i + 1, y, K, K);
    labels.push_back(y);
  }
  EvalResult res;
  res.run = classify_tokens(model, tokenize_for_classification(tokenizer, data, opts.max_length), opts);
  res.metrics = compute_classification_metrics(labels, res.run.predictions, K);
  return res;
}

}  // namespace gpt2q
