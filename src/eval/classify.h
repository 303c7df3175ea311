#pragma once
// Runs a GPT2ForSequenceClassification model over labelled text and scores it.
// Texts are tokenized, truncated to their first max_length tokens, batched in
// file order with right padding (pad id = config.pad_token_id, else eos),
// and classified with GPT2Model::class_logits; the prediction is the argmax
// (lowest index on ties, as torch.argmax).
//
// Timing: one batch is run first as a warm-up and not counted; then every
// batch is timed. Latency per sample of a batch = its wall time / its size;
// mean, p50, p90, p99 are taken over batches (p = numpy's default linear
// interpolation between order statistics); samples/s = samples / total time.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "eval/metrics.h"

namespace gpt2q {

class GPT2Model;
class Tokenizer;
struct GPT2Config;
struct Dataset;

struct ClassifyOptions {
  int64_t max_length = 128;  // tokens kept per text (the first ones)
  int64_t batch_size = 8;
  bool warmup = true;
  bool progress = true;  // bar over samples on stderr
  std::string progress_label = "eval";
};

struct LatencyStats {
  int64_t samples = 0, batches = 0;  // timed ones (the warm-up excluded)
  double total_s = 0;
  double mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0;  // per sample
  double samples_per_s = 0;
};

struct ClassifyResult {
  std::vector<int32_t> predictions;  // one per sample, in input order
  std::vector<float> logits;         // [n, num_labels], row-major
  int64_t num_labels = 0;
  LatencyStats latency;
};

// Error unless the model is a classifier (names `model_dir`:
// "DIR is a GPT2LMHeadModel; eval needs GPT2ForSequenceClassification").
void require_classifier(const GPT2Model& model, const std::filesystem::path& model_dir);

// The classifier over already tokenized sequences (each non-empty, at most
// max_length and n_positions long — Error otherwise).
ClassifyResult classify_tokens(const GPT2Model& model, const std::vector<std::vector<int32_t>>& sequences,
                               const ClassifyOptions& opts);

// Tokens of each text truncated to max_length; Error naming data.source and
// the row for a text with no tokens.
std::vector<std::vector<int32_t>> tokenize_for_classification(const Tokenizer& tokenizer, const Dataset& data,
                                                              int64_t max_length);

struct EvalResult {
  ClassifyResult run;
  ClassificationMetrics metrics;
};

// Checks that every label of `data` lies in [0, num_labels) (Error naming the
// file and row), tokenizes, classifies, and scores against the labels.
EvalResult evaluate_classifier(const GPT2Model& model, const Tokenizer& tokenizer, const Dataset& data,
                               const ClassifyOptions& opts);

// Latency of timed batches (wall seconds, samples in each) as defined above.
LatencyStats summarize_latency(const std::vector<double>& batch_seconds, const std::vector<int64_t>& batch_sizes);

// Class names for reports: config.id2label, else "LABEL_i" (transformers' default).
std::vector<std::string> class_names(const GPT2Config& config, int64_t num_labels);

// q-th percentile (q in [0, 100]) with linear interpolation, like numpy's
// default; `values` need not be sorted. Error on an empty input.
double percentile(std::vector<double> values, double q);

}  // namespace gpt2q
