#pragma once
// The fine-tuning output directory (docs/training.md):
//   OUT/                 the best checkpoint (highest eval accuracy, or lowest
//                        eval loss for lm; the last one without eval data):
//                        config.json, model.safetensors, tokenizer files —
//                        what transformers and `gpt2q eval --model OUT` load;
//   OUT/last/            the checkpoint after the last finished epoch;
//   OUT/train_log.jsonl  the training log (train/training_log.h);
//   OUT/training_args.json  the arguments of the run;
//   OUT/resume/state.safetensors  the resumable state (train/train_state.h).
// Each file is replaced atomically (temp file + rename); the config of a run
// never changes, so a checkpoint is always one consistent model.safetensors.
#include <filesystem>
#include <optional>

#include "train/trainable_gpt2.h"

namespace gpt2q::train {

struct OutputLayout {
  std::filesystem::path root;
  std::filesystem::path best_dir() const { return root; }
  std::filesystem::path last_dir() const { return root / "last"; }
  std::filesystem::path log_path() const { return root / "train_log.jsonl"; }
  std::filesystem::path args_path() const { return root / "training_args.json"; }
  std::filesystem::path state_path() const { return root / "resume" / "state.safetensors"; }
};

// A fresh run needs an absent or empty directory (Error "OUT: not empty; pass
// --resume to continue the run in it, or choose another --out"); a resumed
// run needs the training state, and removes temp files a killed run left.
// Creates OUT and OUT/last.
void prepare_output(const OutputLayout& out, bool resume);
// Copies the tokenizer files found in `tokenizer_dir` (vocab.json,
// merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
// encoder.json, vocab.bpe) into `dir`. Error when none is there.
void copy_tokenizer_files(const std::filesystem::path& tokenizer_dir, const std::filesystem::path& dir);
// config.json + model.safetensors of the current weights.
void save_model(const std::filesystem::path& dir, const TrainableGPT2& model);

}  // namespace gpt2q::train
