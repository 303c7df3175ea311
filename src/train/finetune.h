#pragma once
// `gpt2q finetune` as a library call, so that `gpt2q pipeline` runs the same
// code: checks the request, loads the data (with the seeded stratified
// --eval-split), builds the model (from a checkpoint or HF's init), and runs
// the trainer (train/trainer.h) into `out`.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "train/trainer.h"

namespace gpt2q::train {

struct FinetuneRequest {
  std::optional<std::string> model, init, eval, tokenizer, format, labels;
  std::string task = "classify", train, out;
  std::optional<double> eval_split, dropout;
  std::optional<int64_t> num_labels;
  int64_t epochs = 3, batch_size = 16, warmup_steps = 0, max_length = 128, max_steps = 0, save_every = 0;
  int64_t limit = 0, stop_after_steps = 0, eval_batch_size = 32;
  double lr = 2e-5, weight_decay = 0.0, grad_clip = 1.0;
  uint64_t seed = 42;
  bool resume = false, progress = true;
  // Where the model trains (fp32 on every device); a resume must use the
  // same device (the sums' order, so the last bits, differ between them).
  Device device = Device::CPU;
  // "fp32" or "bf16" (TrainPrecision; bf16 on a GPU only). A resume repeats it.
  std::string precision = "fp32";
};

struct FinetuneOutcome {
  TrainSummary summary;
  std::string architecture;
  size_t train_examples = 0, eval_examples = 0;
  // {"out", "architecture", "steps", "steps_run", "total_steps", "finished",
  //  "train_examples", "eval_examples", "last_loss", "seconds", "tokens_per_s",
  //  "best_epoch", "last_eval", "best_score"}
  nlohmann::json to_json(const std::string& out) const;
};

// --init names: GPT-2's published sizes (small = 124M ... xl = 1.5B) and
// `tiny` (128x2x4) for tests and quick runs; anything else is WxLxH.
std::string init_geometry(const std::string& name);

// The AG News class names, used when the data is in AG News format.
const std::vector<std::string>& agnews_label_names();

// Error (naming the option) for a request that makes no sense.
void check_finetune_request(const FinetuneRequest& r);

FinetuneOutcome finetune(const FinetuneRequest& r);

}  // namespace gpt2q::train
