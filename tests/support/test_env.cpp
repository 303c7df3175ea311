#include "support/test_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace gpt2q::test {

std::filesystem::path data_dir() {
  if (const char* env = std::getenv("GPT2Q_DATA"); env && *env) return env;
  return GPT2Q_DATA_DEFAULT;
}

// $GPT2Q_FIXTURES and $GPT2Q_BINARY move both, for test binaries run away
// from their build tree (a bundle on a GPU machine: docs/cuda.md).
std::filesystem::path fixtures_dir() {
  if (const char* env = std::getenv("GPT2Q_FIXTURES"); env && *env) return env;
  return GPT2Q_FIXTURES_DIR;
}
std::filesystem::path gpt2q_binary() {
  if (const char* env = std::getenv("GPT2Q_BINARY"); env && *env) return env;
  return GPT2Q_BINARY;
}

std::filesystem::path temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("gpt2q_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::filesystem::path ag_news_test_csv() { return data_dir() / "ag_news" / "test.csv"; }
std::filesystem::path gpt2_tokenizer_dir() { return data_dir() / "gpt2-tokenizer"; }
std::filesystem::path fake_gpt2_dir() { return data_dir() / "tiny-gpt2" / "fake_gpt2"; }

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shell_quote(const std::filesystem::path& p) {
  std::string s = "'";  // (built up in steps: GCC 12 warns falsely on "'" + s + "'")
  s += p.string();
  s += '\'';
  return s;
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
  r.out = read_text(out);
  r.err = read_text(err);
  std::filesystem::remove_all(dir);
  return r;
}

CommandResult init_model(const std::filesystem::path& out, const std::string& args) {
  return run_gpt2q("init " + args + " --out " + shell_quote(out));
}

std::vector<float> normal_values(int64_t n, float sd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

double expect_close(const gpt2q::Tensor& got, const gpt2q::Tensor& want, double rtol, const std::string& what) {
  EXPECT_EQ(got.shape(), want.shape()) << what;
  if (got.shape() != want.shape()) return INFINITY;
  auto g = got.span<float>();
  auto w = want.span<float>();
  double scale = 0;
  for (float v : w) scale += std::fabs(v);
  scale /= std::max<size_t>(1, w.size());
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double err = std::fabs(static_cast<double>(g[i]) - w[i]);
    worst = std::max(worst, err / (std::fabs(w[i]) + scale));
    if (!(err <= rtol * (std::fabs(w[i]) + scale)) && ++bad <= 5)
      ADD_FAILURE() << what << " [" << i << "]: got " << g[i] << " want " << w[i];
  }
  EXPECT_EQ(bad, 0u) << what << ": worst relative error " << worst;
  return worst;
}

}  // namespace gpt2q::test
