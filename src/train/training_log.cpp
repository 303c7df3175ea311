#include "train/training_log.h"

#include "core/error.h"

namespace gpt2q::train {

namespace fs = std::filesystem;

TrainingLog::TrainingLog(fs::path path, uint64_t keep_bytes) : path_(std::move(path)), bytes_(keep_bytes) {
  std::error_code ec;
  if (keep_bytes > 0) {
    const auto size = fs::file_size(path_, ec);
    if (ec) fail("{}: cannot resume the training log ({})", path_.string(), ec.message());
    if (size < keep_bytes)
      fail("{}: shorter ({} bytes) than the training state records ({} bytes)", path_.string(), size, keep_bytes);
    fs::resize_file(path_, keep_bytes, ec);
    if (ec) fail("{}: cannot truncate ({})", path_.string(), ec.message());
  }
  out_.open(path_, keep_bytes > 0 ? std::ios::binary | std::ios::app : std::ios::binary | std::ios::trunc);
  if (!out_) fail("{}: cannot open for writing", path_.string());
}

void TrainingLog::write(const nlohmann::json& record) {
  const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  out_.write(line.data(), static_cast<std::streamsize>(line.size()));
  out_.flush();
  if (!out_) fail("{}: write failed", path_.string());
  bytes_ += line.size();
}

}  // namespace gpt2q::train
