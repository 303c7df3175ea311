#pragma once
// Evaluation after each epoch, in eval mode (no dropout), in file order:
//   classify: mean cross entropy of the eval set (from the logits, in
//             double) and accuracy / macro F1 / ... (eval/metrics.h, argmax
//             with the lowest index on ties, as torch.argmax);
//   lm:       mean next-token cross entropy over all scored tokens and its
//             perplexity exp(loss).
#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "train/train_data.h"
#include "train/trainable_gpt2.h"

namespace gpt2q::train {

struct EvalReport {
  double loss = 0;
  int64_t count = 0;  // samples (classify) or scored tokens (lm)
  double perplexity = 0;  // lm only
  std::optional<ClassificationMetrics> metrics;  // classify only
  // Higher is better: accuracy (classify) or -loss (lm).
  double score() const { return metrics ? metrics->accuracy : -loss; }
  nlohmann::json to_json() const;  // {"loss", "accuracy", "macro_f1", ...} or {"loss", "perplexity"}
};

EvalReport evaluate(const TrainableGPT2& model, const Examples& examples, int64_t batch_size);

}  // namespace gpt2q::train
