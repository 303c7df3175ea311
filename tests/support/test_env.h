#pragma once
// Where tests find their inputs. Shared data (../shared/data) can be moved with
// the GPT2Q_DATA environment variable; committed fixtures live in tests/fixtures.
#include <filesystem>
#include <string>

namespace gpt2q::test {

std::filesystem::path data_dir();      // $GPT2Q_DATA or <repo>/../shared/data
std::filesystem::path fixtures_dir();  // <repo>/tests/fixtures
std::filesystem::path gpt2q_binary();  // the built CLI
std::filesystem::path temp_dir(const std::string& tag);  // fresh, unique, under $TMPDIR

struct CommandResult {
  int exit_code = 0;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the gpt2q binary with `args` (already shell-quoted by the caller).
CommandResult run_gpt2q(const std::string& args);

}  // namespace gpt2q::test
