#pragma once
// The resumable training state: everything an interrupted run needs to end
// with the same bits as an uninterrupted one. One safetensors file, written
// atomically (temp file + rename), so a kill leaves either the old state or
// the new one:
//   param/NAME, exp_avg/NAME, exp_avg_sq/NAME  fp32, in parameter order;
//   metadata "gpt2q_train_state": {"version", "step", "epoch",
//     "batch_in_epoch", "best_metric", "best_epoch", "log_bytes",
//     "settings": the result-affecting arguments of the run}.
// No generator state is stored: the data order is a pure function of
// (seed, epoch) and dropout masks of (seed, step) (train/batch_order.h,
// DropoutContext), so the counters are enough.
#include <cstdint>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "train/adamw.h"
#include "train/trainable_gpt2.h"

namespace gpt2q::train {

struct TrainPosition {
  int64_t step = 0;            // optimizer steps done
  int64_t epoch = 0;           // epoch in progress (0-based)
  int64_t batch_in_epoch = 0;  // batches of that epoch done
  std::optional<double> best_metric;  // eval accuracy (classify) or -loss (lm); higher is better
  int64_t best_epoch = -1;
  uint64_t log_bytes = 0;      // length of the training log at this point
};

void save_train_state(const std::filesystem::path& path, const TrainableGPT2& model, const AdamW& opt,
                      const TrainPosition& pos, const nlohmann::json& settings);
// The length of the run a state belongs to, to check its position against.
struct RunLength {
  int64_t total_steps = 0;
  int64_t steps_per_epoch = 0;
};

// Restores parameters and optimizer state in place. Error naming the file
// when it is not a gpt2q training state, when its parameters do not fit the
// model, when `settings` differ from the saved ones (names the first
// differing setting), or when its position is not one this run passes
// through (a counter that is not an integer, out of range, or inconsistent
// with the others: names the field).
TrainPosition load_train_state(const std::filesystem::path& path, TrainableGPT2& model, AdamW& opt,
                               const nlohmann::json& settings, const RunLength& run);

}  // namespace gpt2q::train
