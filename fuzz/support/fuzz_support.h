#pragma once
// Shared by the libFuzzer harnesses (fuzz/fuzz_*.cpp).
//
// The rule every harness enforces: a parser answers bad input with
// gpt2q::Error and nothing else. Any other exception escaping (std::terminate),
// a sanitizer report, a timeout or an out-of-memory is a finding; so is an
// Error raised by GPT2Q_CHECK ("internal error at ..."), which core/error.h
// defines as a gpt2q bug rather than a user error.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace gpt2q::fuzz {

// A file in memory (memfd_create) under a path that the file-based parsers
// open like any other: /proc/self/fd/N. Refilled on every input, so a harness
// writes nothing to disk per exec.
class MemFile {
 public:
  explicit MemFile(const char* name);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  // Replaces the contents; returns path().
  const std::filesystem::path& set(std::string_view bytes);
  const std::filesystem::path& path() const { return path_; }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

// Aborts (a crash libFuzzer saves) with a message on stderr.
[[noreturn]] void finding(const std::string& what);

// Runs f(); a gpt2q::Error is the expected answer to bad input and is
// swallowed, except GPT2Q_CHECK's "internal error", which is a finding.
// Returns true when f() returned normally.
bool expect_only_errors(const std::function<void()>& f);

// Generated seeds. When $GPT2Q_FUZZ_SEEDS names a directory, the harness's
// LLVMFuzzerInitialize calls `write` with it (through seed_mode) and exits
// instead of fuzzing: scripts/fuzz.sh adds these to the fixture seeds. Seeds
// named hostile-* reach a known hostile case (deep nesting, huge keys, ...);
// fuzz.sh also runs each of them once, as a regression input.
void seed_mode(const std::function<void(const std::filesystem::path&)>& write);
void write_seed(const std::filesystem::path& dir, const std::string& name, std::string_view bytes);

// `depth` copies of `open`, then `inner`, then as many of the matching closer.
std::string nested(std::string_view open, std::string_view close, size_t depth, std::string_view inner = "");

// $GPT2Q_DATA, else the shared data beside the clone (as tests/support does).
std::filesystem::path data_dir();

}  // namespace gpt2q::fuzz
