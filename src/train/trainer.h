#pragma once
// The fine-tuning loop, HF Trainer's order of operations per optimizer step:
//   zero grads; forward + backward on one batch (mean loss, dropout masks
//   from (seed, step)); clip the global gradient norm; AdamW step with the
//   linear-warmup lr of this step (lr_schedule.h); log.
// Epochs visit the examples in a seeded order (batch_order.h). After each
// epoch (and when max_steps ends one early) it evaluates, writes the best and
// last checkpoints and the resumable state (output_dir.h, train_state.h);
// with save_every = N it also writes the state every N steps. Resuming
// restores the state and continues so that the final weights are the bits an
// uninterrupted run ends with.
#include <cstdint>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "train/epoch_eval.h"
#include "train/output_dir.h"
#include "train/train_data.h"
#include "train/trainable_gpt2.h"

namespace gpt2q::train {

struct TrainOptions {
  int64_t epochs = 3;
  int64_t batch_size = 16;
  double lr = 2e-5;
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // <= 0: no clipping
  int64_t warmup_steps = 0;
  int64_t max_steps = 0;   // > 0: train this many steps (overrides epochs, as HF's max_steps)
  uint64_t seed = 42;
  int64_t save_every = 0;  // also write the resumable state every N steps
  int64_t stop_after_steps = 0;  // testing: stop after this many steps as if killed
  int64_t eval_batch_size = 32;
  bool resume = false;
  bool progress = true;  // bar (core/progress.h) and one line per epoch on stderr
  // The result-affecting settings of the run; a resume must match them.
  nlohmann::json settings = nlohmann::json::object();
};

struct TrainSummary {
  int64_t steps = 0, total_steps = 0, epochs_done = 0;
  int64_t steps_run = 0;  // by this process (a resume continues from steps - steps_run)
  bool stopped = false;  // stop_after_steps ended the run early
  double last_loss = 0;
  double seconds = 0, tokens_per_s = 0;  // this process's part of the run, evaluations and saves included
  std::optional<EvalReport> last_eval;
  std::optional<double> best_score;
  int64_t best_epoch = -1;
};

// Steps the run makes: max_steps, or epochs x ceil(n_train / batch_size).
int64_t total_train_steps(const TrainOptions& opts, size_t n_train);

// `eval` may be empty (no evaluation; best = last). `tokenizer_dir` files are
// copied into the checkpoints.
TrainSummary run_training(TrainableGPT2& model, const Examples& train, const Examples& eval, const TrainOptions& opts,
                          const OutputLayout& out, const std::filesystem::path& tokenizer_dir);

}  // namespace gpt2q::train
