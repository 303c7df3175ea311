#include "support/fuzz_support.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sys/mman.h>
#include <unistd.h>

namespace gpt2q::fuzz {

MemFile::MemFile(const char* name) {
  fd_ = ::memfd_create(name, MFD_CLOEXEC);
  if (fd_ < 0) {
    std::fprintf(stderr, "memfd_create(%s): %s\n", name, std::strerror(errno));
    std::abort();
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemFile::~MemFile() {
  if (fd_ >= 0) ::close(fd_);
}

const std::filesystem::path& MemFile::set(std::string_view bytes) {
  // Truncate first: a shorter input must not keep the tail of a longer one.
  if (::ftruncate(fd_, 0) != 0) finding("memfd ftruncate failed");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n <= 0) finding(std::string("memfd pwrite failed: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return path_;
}

void finding(const std::string& what) {
  std::fprintf(stderr, "\n==== gpt2q fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

bool expect_only_errors(const std::function<void()>& f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    // A prefix test: messages quote the input (a JSON parse error shows the
    // bytes it read), so a substring test is a finding the fuzzer can forge.
    if (std::string_view(e.what()).starts_with("internal error at "))
      finding(std::string("GPT2Q_CHECK failed on user input: ") + e.what());
    return false;
  }
}

void seed_mode(const std::function<void(const std::filesystem::path&)>& write) {
  const char* dir = std::getenv("GPT2Q_FUZZ_SEEDS");
  if (!dir || !*dir) return;
  std::filesystem::create_directories(dir);
  write(dir);
  std::exit(0);
}

void write_seed(const std::filesystem::path& dir, const std::string& name, std::string_view bytes) {
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write seed %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

std::string nested(std::string_view open, std::string_view close, size_t depth, std::string_view inner) {
  std::string s;
  s.reserve(depth * (open.size() + close.size()) + inner.size());
  for (size_t i = 0; i < depth; ++i) s += open;
  s += inner;
  for (size_t i = 0; i < depth; ++i) s += close;
  return s;
}

std::filesystem::path data_dir() {
  if (const char* env = std::getenv("GPT2Q_DATA"); env && *env) return env;
  return GPT2Q_DATA_DEFAULT;
}

}  // namespace gpt2q::fuzz
