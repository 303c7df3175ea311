#include "support/test_env.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace gpt2q::test {

std::filesystem::path data_dir() {
  if (const char* env = std::getenv("GPT2Q_DATA"); env && *env) return env;
  return GPT2Q_DATA_DEFAULT;
}

std::filesystem::path fixtures_dir() { return GPT2Q_FIXTURES_DIR; }
std::filesystem::path gpt2q_binary() { return GPT2Q_BINARY; }

std::filesystem::path temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("gpt2q_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

static std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult run_gpt2q(const std::string& args) {
  auto dir = temp_dir("cmd");
  auto out = dir / "stdout", err = dir / "stderr";
  std::string cmd = "'";
  cmd.append(gpt2q_binary().string()).append("' ").append(args);
  cmd.append(" >'").append(out.string()).append("' 2>'").append(err.string()).append("' </dev/null");
  int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace gpt2q::test
