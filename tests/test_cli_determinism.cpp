// Same inputs, same results whatever the thread count (docs/reliability.md,
// "Determinism"): `eval` with 1 and 2 threads writes identical predictions
// and metrics, and `logits` prints identical logits. The design makes them
// identical, not only close: every reduction (LayerNorm, softmax, attention,
// the loss) runs over one row in a fixed order on one thread, and the GEMMs
// split the output, never the inner dimension, across threads.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "support/test_env.h"

namespace {

using nlohmann::json;
using namespace gpt2q::test;
namespace fs = std::filesystem;

std::string quote_text(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// gpt2q with `threads` OpenMP and OpenBLAS threads; stdout, or "" on failure.
std::string run_with_threads(int threads, const std::string& args) {
  const auto dir = temp_dir("determinism_cmd");
  const std::string cmd = "OMP_NUM_THREADS=" + std::to_string(threads) + " OPENBLAS_NUM_THREADS=" +
                          std::to_string(threads) + " " + shell_quote(gpt2q_binary()) + " " + args + " >" +
                          shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  const int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n" << read_text(dir / "err");
  return read_text(dir / "out");
}

class Determinism : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(temp_dir("determinism"));
    // Wide enough (128 x 2 layers) that OpenBLAS really uses both threads.
    const auto r = init_model(*root_ / "clf", "--geometry 128x2x4 --task classify --labels World,Sports,Business,Sci/Tech --seed 11");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The first 200 AG News test rows.
    std::ifstream in(ag_news_test_csv());
    std::ofstream out(*root_ / "few.csv");
    std::string line;
    for (int i = 0; i < 200 && std::getline(in, line); ++i) out << line << "\n";
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static fs::path* root_;
};
fs::path* Determinism::root_ = nullptr;

TEST_F(Determinism, EvalPredictionsAreIdenticalWithOneAndTwoThreads) {
  std::string preds[2];
  json metrics[2];
  for (int t = 1; t <= 2; ++t) {
    const fs::path pred = *root_ / ("pred" + std::to_string(t) + ".csv");
    const std::string out = run_with_threads(
        t, "eval --model " + shell_quote(*root_ / "clf") + " --data " + shell_quote(*root_ / "few.csv") +
               " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --batch-size 16 --max-length 128 --json" +
               " --predictions " + shell_quote(pred));
    ASSERT_FALSE(out.empty());
    metrics[t - 1] = json::parse(out);
    // Everything but the timings and the thread count itself.
    for (const char* key : {"latency_ms_per_sample", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99",
                            "samples_per_s", "seconds", "threads"})
      metrics[t - 1].erase(key);
    preds[t - 1] = read_text(pred);
  }
  EXPECT_EQ(metrics[0]["n"], 200);
  EXPECT_FALSE(preds[0].empty());
  EXPECT_TRUE(preds[0] == preds[1]) << "predictions differ between 1 and 2 threads";
  EXPECT_EQ(metrics[0], metrics[1]);
}

TEST_F(Determinism, LogitsAreIdenticalWithOneAndTwoThreads) {
  std::string texts;
  std::ifstream in(*root_ / "few.csv");
  std::string line;
  for (int i = 0; i < 12 && std::getline(in, line); ++i) texts += " --text " + quote_text(line);
  std::string out[2];
  for (int t = 1; t <= 2; ++t)
    out[t - 1] = run_with_threads(t, "logits --json --model " + shell_quote(*root_ / "clf") + " --tokenizer " +
                                         shell_quote(gpt2_tokenizer_dir()) + texts);
  ASSERT_FALSE(out[0].empty());
  EXPECT_EQ(out[0], out[1]);  // the printed floats round-trip: same text, same bits
}

// A CPU that OpenBLAS does not know gets the newest kernel set its features
// run (cpu::blas_coretype_upgrade), never a generic pre-AVX2 one, which
// would also split the GEMMs' inner dimension across threads.
TEST(BlasKernels, AnAvx2CpuNeverRunsAGenericKernelSet) {
  const std::string cmd = "env -u OPENBLAS_CORETYPE " + shell_quote(gpt2q_binary()) + " --version";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  ASSERT_EQ(pclose(p), 0) << out;
  const size_t at = out.find("(core: ");
  ASSERT_NE(at, std::string::npos) << out;
  std::string core = out.substr(at + 7, out.find(')', at) - at - 7);
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool avx2 = out.find(" avx2") != std::string::npos || out.find("(avx2") != std::string::npos;
  if (!avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  for (const char* generic : {"prescott", "core2", "penryn", "nehalem", "sandybridge", "katmai", "atom"})
    EXPECT_NE(core, generic) << out;
}

}  // namespace
