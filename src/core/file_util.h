#pragma once
// File helpers shared by every layer: read-only memory maps, whole-file reads,
// and atomic writes (write a temp file beside the target, fsync, rename), so a
// crash or Ctrl-C never leaves partial output.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace gpt2q {

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

// Whole file as bytes; Error "PATH: cannot read (reason)" on failure.
std::string read_file(const std::filesystem::path& path);

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
