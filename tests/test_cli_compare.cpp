// `gpt2q compare` end to end on a tiny classifier (gpt2q init, 64x2x2) and a
// tiny LM: the report files, figures cross-checked against `gpt2q eval`,
// `gpt2q perplexity` and a ready-made `gpt2q quantize` checkpoint, reuse of
// finished variants, --force, and bad arguments (one error line, non-zero
// exit, no report directory).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/test_env.h"

namespace {

using namespace gpt2q::test;

namespace fs = std::filesystem;
using nlohmann::json;

class CliCompare : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(gpt2q::test::temp_dir("cli_compare"));
    auto r = init_model(*root_ / "clf", "--geometry 64x2x2 --task classify --n-positions 64 --seed 5");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = init_model(*root_ / "lm", "--geometry 64x2x2 --task lm --n-positions 64 --seed 6");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The first 24 AG News test rows, also as a file of their own for `gpt2q eval`.
    std::istringstream all(read_text(ag_news_test_csv()));
    std::ofstream head(*root_ / "head24.csv", std::ios::binary);
    std::string line;
    for (int i = 0; i < 24 && std::getline(all, line); ++i) head << line << '\n';
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static std::string compare(const fs::path& out, const std::string& variants, const std::string& extra = "") {
    return "compare --model " + shell_quote(*root_ / "clf") + " --data " + shell_quote(ag_news_test_csv()) +
           " --limit 24 --batch-size 8 " + "--max-length 32 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
           " --variants " + variants + " --out " + shell_quote(out) + " " + extra;
  }
  static fs::path* root_;
};
fs::path* CliCompare::root_ = nullptr;

void expect_no_temp_files(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(CliCompare, WritesTheReportAndAgreesWithEval) {
  const fs::path out = gpt2q::test::temp_dir("cmp_run") / "report";
  auto r = run_gpt2q(compare(out, "fp32,int8-tensor,nf4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"report.md", "report.html", "results.json", "results.csv", "confusion_fp32.csv",
                        "confusion_int8-tensor.csv", "confusion_nf4.csv", "variants/fp32.json",
                        "variants/int8-tensor.json", "variants/nf4.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  expect_no_temp_files(out);
  EXPECT_NE(r.err.find("[2/3] int8-tensor"), std::string::npos) << r.err;  // progress names variant and position

  const json j = json::parse(read_text(out / "results.json"));
  ASSERT_EQ(j["variants"].size(), 3u);
  EXPECT_EQ(j["run"]["samples"], 24);
  EXPECT_EQ(j["run"]["baseline"], "fp32");
  EXPECT_NE(j["run"]["command"].get<std::string>().find("--variants fp32,int8-tensor,nf4"), std::string::npos);
  const auto& fp32 = j["variants"][0];
  const auto& nf4 = j["variants"][2];
  EXPECT_EQ(fp32["memory"]["compression_ratio"], 1.0);
  EXPECT_GT(nf4["memory"]["compression_ratio"].get<double>(), 1.0);
  EXPECT_LT(nf4["memory"]["weight_bytes"].get<size_t>(), fp32["memory"]["weight_bytes"].get<size_t>());
  EXPECT_EQ(fp32["vs_baseline"]["agreement"], 1.0);
  EXPECT_EQ(fp32["vs_baseline"]["kl"]["mean"], 0.0);
  EXPECT_GT(nf4["latency"]["mean_ms"].get<double>(), 0.0);
  EXPECT_EQ(nf4["quality"]["n"], 24);

  // The fp32 variant is the plain model: `gpt2q eval` on the same rows gives the same scores.
  auto e = run_gpt2q("eval --model " + shell_quote(*root_ / "clf") + " --data " + shell_quote(*root_ / "head24.csv") +
                     " --max-length 32 --batch-size 8 --json --tokenizer " + shell_quote(gpt2_tokenizer_dir()));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const json ej = json::parse(e.out);
  EXPECT_EQ(fp32["quality"]["accuracy"], ej["accuracy"]);
  EXPECT_EQ(fp32["quality"]["macro_f1"], ej["macro_f1"]);
  EXPECT_EQ(fp32["quality"]["confusion_matrix"], ej["confusion_matrix"]);
  // `gpt2q info` reports the held bytes of the fp32 model.
  auto info = run_gpt2q("info " + shell_quote(*root_ / "clf") + " --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(fp32["memory"]["weight_bytes"], json::parse(info.out)["held_bytes"]);

  // results.csv: header + one row per variant; report.md names every variant and the command.
  const std::string csv = read_text(out / "results.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  const std::string md = read_text(out / "report.md");
  for (const char* v : {"fp32", "int8-tensor", "nf4"}) EXPECT_NE(md.find(std::string("| ") + v + " |"), std::string::npos);
  EXPECT_NE(md.find(j["run"]["command"].get<std::string>()), std::string::npos);
  const std::string cm = read_text(out / "confusion_fp32.csv");
  EXPECT_EQ(cm.substr(0, cm.find('\n')), "true\\predicted,World,Sports,Business,Sci/Tech");
}

TEST_F(CliCompare, ReusesFinishedVariantsUnlessForced) {
  const fs::path out = gpt2q::test::temp_dir("cmp_reuse") / "report";
  auto r = run_gpt2q(compare(out, "fp32,nf4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json first = json::parse(read_text(out / "results.json"));
  EXPECT_EQ(first["variants"][1]["reused"], false);

  // Same inputs plus one more variant: the two finished ones are reused, byte for byte.
  r = run_gpt2q(compare(out, "fp32,nf4,fp4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("fp32: reusing"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nf4: reusing"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("fp4: reusing"), std::string::npos) << r.err;
  const json second = json::parse(read_text(out / "results.json"));
  EXPECT_EQ(second["variants"][1]["reused"], true);
  EXPECT_EQ(second["variants"][2]["reused"], false);
  EXPECT_EQ(second["variants"][1]["latency"], first["variants"][1]["latency"]);

  // --force runs everything again.
  r = run_gpt2q(compare(out, "fp32,nf4,fp4", "--force"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("reusing"), std::string::npos) << r.err;
  const json forced = json::parse(read_text(out / "results.json"));
  for (const auto& v : forced["variants"]) EXPECT_EQ(v["reused"], false);
  EXPECT_EQ(forced["variants"][1]["quality"], first["variants"][1]["quality"]);  // same seed, same result

  // Other inputs (another --limit) are not reused.
  r = run_gpt2q("compare --model " + shell_quote(*root_ / "clf") + " --data " + shell_quote(ag_news_test_csv()) +
                " --limit 16 --batch-size 8 --max-length 32 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                " --variants fp32,nf4 --out " + shell_quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("reusing"), std::string::npos) << r.err;
  EXPECT_EQ(json::parse(read_text(out / "results.json"))["run"]["samples"], 16);
  expect_no_temp_files(out);
}

TEST_F(CliCompare, ReadyMadeCheckpointEqualsQuantizingInMemory) {
  const fs::path dir = gpt2q::test::temp_dir("cmp_ready");
  auto r =
      run_gpt2q("quantize --model " + shell_quote(*root_ / "clf") + " --method nf4 --out " + shell_quote(dir / "nf4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_gpt2q(compare(dir / "a", "fp32,nf4@" + (dir / "nf4").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_gpt2q(compare(dir / "b", "fp32,nf4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json a = json::parse(read_text(dir / "a" / "results.json")), b = json::parse(read_text(dir / "b" / "results.json"));
  EXPECT_EQ(a["variants"][1]["source"].get<std::string>().rfind("ready-made: ", 0), 0u);
  EXPECT_EQ(b["variants"][1]["source"], "quantized in memory");
  EXPECT_EQ(a["variants"][1]["memory"]["weight_bytes"], b["variants"][1]["memory"]["weight_bytes"]);
  EXPECT_EQ(a["variants"][1]["quality"], b["variants"][1]["quality"]);
  EXPECT_EQ(a["variants"][1]["vs_baseline"]["kl"], b["variants"][1]["vs_baseline"]["kl"]);

  // The quantized dir as --model: its own variant by default; others need the original weights.
  r = run_gpt2q("compare --model " + shell_quote(dir / "nf4") + " --data " + shell_quote(ag_news_test_csv()) +
                " --limit 8 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --out " + shell_quote(dir / "c"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json c = json::parse(read_text(dir / "c" / "results.json"));
  ASSERT_EQ(c["variants"].size(), 1u);
  EXPECT_EQ(c["variants"][0]["name"], "nf4");
  r = run_gpt2q("compare --model " + shell_quote(dir / "nf4") + " --data " + shell_quote(ag_news_test_csv()) +
                " --limit 8 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --variants nf4,fp4 --out " +
                shell_quote(dir / "d"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("already quantized"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "d"));
}

TEST_F(CliCompare, LanguageModelPerplexityMatchesThePerplexityCommand) {
  const fs::path dir = gpt2q::test::temp_dir("cmp_lm");
  std::ofstream(dir / "text.txt") << "The quick brown fox jumps over the lazy dog. It was a bright cold day in April, "
                                     "and the clocks were striking thirteen. Call me Ishmael. Some years ago, never "
                                     "mind how long precisely, I thought I would sail about a little.\n";
  auto r = run_gpt2q("compare --model " + shell_quote(*root_ / "lm") + " --text " + shell_quote(dir / "text.txt") +
                     " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                     " --max-length 16 --stride 8 --variants fp32,llm-int8 --out " + shell_quote(dir / "o"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(read_text(dir / "o" / "results.json"));
  EXPECT_EQ(j["run"]["task"], "language-modeling");
  ASSERT_EQ(j["variants"].size(), 2u);
  auto p = run_gpt2q("perplexity --model " + shell_quote(*root_ / "lm") + " --text " + shell_quote(dir / "text.txt") +
                     " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --max-length 16 --stride 8 --json");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(j["variants"][0]["perplexity"]["ppl"], json::parse(p.out)["ppl"]);
  EXPECT_EQ(j["variants"][0]["vs_baseline"]["kl"]["mean"], 0.0);
  EXPECT_GT(j["variants"][1]["vs_baseline"]["kl"]["mean"].get<double>(), 0.0);
  EXPECT_TRUE(fs::exists(dir / "o" / "report.html"));
  EXPECT_FALSE(fs::exists(dir / "o" / "confusion_fp32.csv"));
}

void expect_clean_error(const gpt2q::test::CommandResult& r, const std::string& fragment, const fs::path& out) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err.rfind("gpt2q: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "report dir left behind";
}

TEST_F(CliCompare, BadArgumentsLeaveNoReportDir) {
  const fs::path dir = gpt2q::test::temp_dir("cmp_bad");
  expect_clean_error(run_gpt2q(compare(dir / "a", "fp32,int9")), "--variants: 'int9': unknown method", dir / "a");
  expect_clean_error(run_gpt2q(compare(dir / "b", "fp32,nf4:per-channel")), "applies to int8-tensor only", dir / "b");
  expect_clean_error(run_gpt2q(compare(dir / "c", "fp32,nf4,nf4")), "listed twice", dir / "c");
  expect_clean_error(
      run_gpt2q("compare --model " + shell_quote(*root_ / "clf") + " --data " + shell_quote(dir / "missing.csv") +
                " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --out " + shell_quote(dir / "d")),
      "missing.csv", dir / "d");
  expect_clean_error(run_gpt2q(compare(dir / "e", "fp32", "--stride 3")), "--stride applies to language models", dir / "e");
  expect_clean_error(
      run_gpt2q("compare --model " + shell_quote(*root_ / "clf") + " --data " + shell_quote(ag_news_test_csv()) +
                " --limit -1 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --out " + shell_quote(dir / "e2")),
      "--limit -1", dir / "e2");
  expect_clean_error(
      run_gpt2q("compare --model " + shell_quote(*root_ / "lm") + " --data " + shell_quote(ag_news_test_csv()) +
                " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --out " + shell_quote(dir / "f")),
      "language model", dir / "f");
  expect_clean_error(run_gpt2q(compare(dir / "g", "fp32", "--text " + shell_quote(ag_news_test_csv()))),
                     "is a classifier", dir / "g");
  // --out naming a file.
  std::ofstream(dir / "file") << "x";
  auto r = run_gpt2q(compare(dir / "file", "fp32"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not a directory"), std::string::npos) << r.err;
  // --out that cannot be created (below a file; as root, permissions would
  // not stop it): "gpt2q: error: PATH: problem", no raw "filesystem error".
  const fs::path below = dir / "file" / "sub";
  r = run_gpt2q(compare(below, "fp32"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("gpt2q: error: " + below.string(), 0), 0u) << r.err;
  EXPECT_EQ(r.err.find("filesystem error"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// Ctrl-C (SIGINT, default action) after the first variant: the finished
// variant's cache is complete, no report file exists, no temp file is left.
TEST_F(CliCompare, InterruptLeavesNoHalfWrittenReport) {
  const fs::path out = gpt2q::test::temp_dir("cmp_sigint") / "report";
  const std::string bin = gpt2q::test::gpt2q_binary().string(), model = (*root_ / "clf").string(),
                    data = ag_news_test_csv().string(), tok = gpt2_tokenizer_dir().string(), out_s = out.string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    freopen("/dev/null", "w", stderr);
    execl(bin.c_str(), bin.c_str(), "compare", "--model", model.c_str(), "--data", data.c_str(), "--tokenizer",
          tok.c_str(), "--max-length", "32", "--limit", "1500", "--variants", "fp32,llm-int8,llm-int8:threshold=0", "--out",
          out_s.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(out / "variants" / "fp32.json") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "finished before the interrupt; status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGINT);
  for (const char* f : {"report.md", "report.html", "results.json", "results.csv"}) EXPECT_FALSE(fs::exists(out / f)) << f;
  expect_no_temp_files(out);
  EXPECT_NO_THROW(json::parse(read_text(out / "variants" / "fp32.json")));
}

TEST_F(CliCompare, HelpDocumentsVariantSpecs) {
  auto r = run_gpt2q("compare --help");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* s : {"int8-tensor:per-channel", "mlp-only", "all-tensors", "llm-int8:threshold=0",
                        "nf4:double-quant", "fp32,int8-tensor,llm-int8,nf4", "--force", "--limit"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

}  // namespace
