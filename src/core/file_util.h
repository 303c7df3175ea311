#pragma once
// File helpers shared by every layer: read-only memory maps, whole-file reads,
// and atomic writes (write a temp file beside the target, fsync, rename), so a
// crash or Ctrl-C never leaves partial output.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace gpt2q {

// The largest file a reader accepts, and what the error calls it:
// "PATH: N bytes, more than the M allowed for WHAT". Readers of small
// structured files (JSON configs, tokenizer files) set one, so that a
// corrupt or hostile 100 MB config is refused before it is parsed into a
// DOM several times its size. Caps leave wide margins: GPT-2's vocab.json
// is 1 MB, its tokenizer.json 1.4 MB, a config.json a few kB.
struct FileLimit {
  uint64_t max_bytes;
  const char* what;
};
inline constexpr FileLimit kNoFileLimit{UINT64_MAX, "a file"};
inline constexpr FileLimit kConfigFileLimit{uint64_t{16} << 20, "a config file"};
inline constexpr FileLimit kTokenizerFileLimit{uint64_t{64} << 20, "a tokenizer file"};

// Every reader refuses what is not a regular file ("PATH: not a regular
// file") before opening it: open() of a FIFO blocks until a writer comes,
// and a directory or device is never what the user meant.

// A read-only mapping of a whole file. Errors name the file.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
  std::filesystem::path path_;
};

// Whole file as bytes; Error "PATH: cannot read (reason)" on failure, and
// the FileLimit error for a file above `limit`.
std::string read_file(const std::filesystem::path& path, const FileLimit& limit = kNoFileLimit);

// create_directories with one error line: "PATH: cannot create directory
// (Permission denied)", not std::filesystem's "filesystem error: ...".
void make_directories(const std::filesystem::path& path);

// Writes through `write(std::ostream&)` into PATH.tmp.XXXX, then renames over
// PATH. On any exception the temp file is removed and PATH is untouched.
// A symlink is written through: its final target is replaced, the link
// stays. An existing non-regular file (a device such as /dev/null, a FIFO)
// is written directly, since it cannot be replaced; a directory is an error.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

}  // namespace gpt2q
