#include "train/output_dir.h"

#include <regex>

#include "core/error.h"
#include "core/file_util.h"
#include "io/checkpoint.h"

namespace gpt2q::train {

namespace fs = std::filesystem;

namespace {

// A killed run can leave write_file_atomic's temp files ("NAME.tmp.PID.N")
// behind; the resumed run rewrites every file they were meant to become.
void remove_stale_temp_files(const fs::path& dir) {
  static const std::regex temp_name(R"(.*\.tmp\.[0-9]+\.[0-9]+)");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && std::regex_match(e.path().filename().string(), temp_name)) fs::remove(e.path(), ec);
}

}  // namespace

void prepare_output(const OutputLayout& out, bool resume) {
  std::error_code ec;
  if (resume) {
    if (!fs::exists(out.state_path()))
      fail("{}: no training state to resume ({} is missing)", out.root.string(), out.state_path().string());
    for (const fs::path& d : {out.root, out.last_dir(), out.state_path().parent_path()}) remove_stale_temp_files(d);
  } else if (fs::exists(out.root, ec) && !(fs::is_directory(out.root) && fs::is_empty(out.root, ec))) {
    fail("{}: not empty; pass --resume to continue the run in it, or choose another --out", out.root.string());
  }
  fs::create_directories(out.last_dir(), ec);
  if (ec) fail("{}: cannot create directory ({})", out.last_dir().string(), ec.message());
}

void copy_tokenizer_files(const fs::path& tokenizer_dir, const fs::path& dir) {
  static const char* kFiles[] = {"vocab.json",   "merges.txt",  "tokenizer.json", "tokenizer_config.json",
                                 "special_tokens_map.json", "encoder.json", "vocab.bpe"};
  int copied = 0;
  for (const char* name : kFiles) {
    const fs::path src = tokenizer_dir / name;
    if (!fs::is_regular_file(src)) continue;
    write_file_atomic(dir / name, read_file(src));
    ++copied;
  }
  if (copied == 0) fail("{}: no tokenizer files to copy", tokenizer_dir.string());
}

void save_model(const fs::path& dir, const TrainableGPT2& model) {
  save_checkpoint(dir, model.config(), model.kind(), model.canonical_tensors());
}

}  // namespace gpt2q::train
