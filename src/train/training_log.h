#pragma once
// The training log: one JSON object per line (JSONL), appended and flushed
// as training goes, so that `tail -f` shows it and a kill loses at most the
// line being written. A resumed run first truncates the file to the length
// recorded in the training state, dropping the lines of the steps it redoes,
// so the log of a resumed run has the same lines as an uninterrupted one
// (timings aside).
#include <cstdint>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace gpt2q::train {

class TrainingLog {
 public:
  // keep_bytes: 0 starts a new log; otherwise the file must be at least that
  // long and is cut to it (Error naming the file otherwise).
  TrainingLog(std::filesystem::path path, uint64_t keep_bytes);
  void write(const nlohmann::json& record);
  uint64_t bytes() const { return bytes_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
  uint64_t bytes_ = 0;
};

}  // namespace gpt2q::train
