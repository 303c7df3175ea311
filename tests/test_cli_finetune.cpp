// gpt2q finetune end to end: bad arguments give one error line and write
// nothing; a small AG News run writes a loadable classifier checkpoint, its
// log and state; a run stopped part-way and resumed ends with the bytes of an
// uninterrupted run; the LM task writes a GPT2LMHeadModel.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "model/gpt2.h"
#include "support/test_env.h"

using namespace gpt2q;
namespace fs = std::filesystem;

namespace {

using namespace gpt2q::test;

// A tiny classifier run on AG News (the first 48 train and 48 held-out texts).
std::string tiny_ag_run(const fs::path& out, const std::string& extra = "") {
  return "finetune --init 64x1x2 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --train " +
         shell_quote(ag_news_test_csv()) +
         " --eval-split 0.2 --limit 48 --epochs 2 --batch-size 8 --lr 1e-3 --max-length 24 --dropout 0.1 --seed 3"
         " --quiet --out " +
         shell_quote(out) + " " + extra;
}

ino_t fs_inode(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

void expect_one_error_line(const test::CommandResult& r, const std::string& needle, const std::string& args) {
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_EQ(r.err.rfind("gpt2q: error: ", 0), 0u) << args << "\n" << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << "\n" << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
}

TEST(CliFinetune, BadArgumentsGiveOneErrorLineAndNoOutput) {
  const auto dir = test::temp_dir("ft_bad");
  const std::string tok = " --tokenizer " + shell_quote(gpt2_tokenizer_dir());
  const std::string train = " --train " + shell_quote(ag_news_test_csv());
  const fs::path out = dir / "out";
  const std::string o = " --out " + shell_quote(out);
  struct Case {
    std::string args, needle;
  };
  const std::vector<Case> cases = {
      {"finetune" + train + o, "exactly one of --model"},
      {"finetune --init tiny --model " + shell_quote(dir) + tok + train + o, "exactly one of --model"},
      {"finetune --init tiny" + train + o, "--init needs --tokenizer"},
      {"finetune --init tiny --task regress" + tok + train + o, "--task"},
      {"finetune --init tiny --eval-split 1.5" + tok + train + o, "--eval-split"},
      {"finetune --init tiny --eval-split 0.2 --eval " + shell_quote(ag_news_test_csv()) + tok + train + o,
       "at most one of --eval"},
      {"finetune --init tiny --epochs 0" + tok + train + o, "--epochs"},
      {"finetune --init tiny --batch-size 0" + tok + train + o, "--batch-size"},
      {"finetune --init tiny --lr -1" + tok + train + o, "--lr"},
      {"finetune --init tiny --dropout 1.5" + tok + train + o, "--dropout"},
      {"finetune --init tiny --max-length 5000" + tok + train + o, "--max-length"},
      {"finetune --init 130x2x4" + tok + train + o, "--init"},
      {"finetune --init tiny --labels A" + tok + train + o, "--labels"},
      {"finetune --init tiny --num-labels 2" + tok + train + o, "has label 2 but the classifier has 2 labels"},
      {"finetune --init tiny --task lm --labels A,B" + tok + train + o, "--task classify only"},
      {"finetune --init tiny" + tok + " --train " + shell_quote(dir / "missing.csv") + o, "missing.csv"},
      {"finetune --model " + shell_quote(dir / "nomodel") + train + o, "nomodel"},
      {"finetune --init tiny --resume" + tok + train + o, "no training state to resume"},
      {"finetune --init tiny --precision fp16" + tok + train + o, "unknown training precision 'fp16'"},
      {"finetune --init tiny --precision bf16" + tok + train + o, "--precision bf16 trains on a GPU"},
      {"bench-train --geometry tiny --precision bf16", "--precision bf16 trains on a GPU"},
  };
  for (const auto& c : cases) {
    expect_one_error_line(test::run_gpt2q(c.args), c.needle, c.args);
    EXPECT_FALSE(fs::exists(out / "model.safetensors")) << c.args;
  }
  // A used output dir is refused without --resume.
  fs::create_directories(out);
  { std::ofstream(out / "something") << "x"; }
  const std::string args = "finetune --init tiny" + tok + train + o;
  expect_one_error_line(test::run_gpt2q(args), "not empty", args);
  fs::remove_all(dir);
}

TEST(CliFinetune, ClassifierRunWritesCheckpointLogAndStateAndResumesBitForBit) {
  const auto dir = test::temp_dir("ft_ag");
  const fs::path whole = dir / "whole", parts = dir / "parts";
  const auto r = test::run_gpt2q(tiny_ag_run(whole, "--json --save-every 4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["steps"], 12);  // 2 epochs x 48 / 8
  EXPECT_EQ(j["train_examples"], 48);
  EXPECT_EQ(j["eval_examples"], 48);  // --limit applies to both
  EXPECT_EQ(j["architecture"], "GPT2ForSequenceClassification");
  ASSERT_TRUE(j.contains("last_eval"));
  EXPECT_TRUE(j["last_eval"].contains("accuracy"));

  for (const fs::path& d : {whole, whole / "last"}) {
    auto m = GPT2Model::load(d);
    EXPECT_TRUE(m->is_classifier());
    EXPECT_EQ(m->config().id2label, (std::vector<std::string>{"World", "Sports", "Business", "Sci/Tech"}));
    EXPECT_EQ(m->config().pad_token_id, m->config().eos_token_id);
    EXPECT_TRUE(fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt"));
  }
  EXPECT_TRUE(fs::exists(whole / "resume" / "state.safetensors"));
  EXPECT_TRUE(fs::exists(whole / "training_args.json"));
  // `gpt2q eval --model OUT` takes the output as it is.
  {
    std::istringstream all(read_file(ag_news_test_csv()));
    std::string head, line;
    for (int i = 0; i < 20 && std::getline(all, line); ++i) head += line + "\n";
    write_file_atomic(dir / "few.csv", head);
    const auto ev =
        test::run_gpt2q("eval --model " + shell_quote(whole) + " --data " + shell_quote(dir / "few.csv") + " --json");
    ASSERT_EQ(ev.exit_code, 0) << ev.err;
    EXPECT_EQ(nlohmann::json::parse(ev.out)["n"], 20);
  }

  // Stopped after 6 steps (state at step 4), resumed: same bytes.
  auto s1 = test::run_gpt2q(tiny_ag_run(parts, "--save-every 4 --stop-after-steps 6"));
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  EXPECT_NE(s1.out.find("stopped after 6 steps of 12"), std::string::npos) << s1.out;
  auto s2 = test::run_gpt2q(tiny_ag_run(parts, "--save-every 4 --resume"));
  ASSERT_EQ(s2.exit_code, 0) << s2.err;
  EXPECT_TRUE(read_file(whole / "model.safetensors") == read_file(parts / "model.safetensors"));
  EXPECT_TRUE(read_file(whole / "last" / "model.safetensors") == read_file(parts / "last" / "model.safetensors"));

  // Resuming the finished run does nothing and writes nothing (so it also
  // works once the directory is read-only): every file keeps its inode and
  // modification time.
  {
    std::map<std::string, std::pair<ino_t, fs::file_time_type>> before;
    for (const auto& e : fs::recursive_directory_iterator(whole))
      before[e.path().string()] = {fs_inode(e.path()), fs::last_write_time(e.path())};
    const auto again = test::run_gpt2q(tiny_ag_run(whole, "--json --save-every 4 --resume"));
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(nlohmann::json::parse(again.out)["steps"], 12);
    std::map<std::string, std::pair<ino_t, fs::file_time_type>> after;
    for (const auto& e : fs::recursive_directory_iterator(whole))
      after[e.path().string()] = {fs_inode(e.path()), fs::last_write_time(e.path())};
    EXPECT_TRUE(before == after) << "resuming a finished run changed its directory";
  }

  // Resuming with other settings is refused, naming the setting.
  const std::string other = tiny_ag_run(parts, "--resume --lr 5e-4");
  expect_one_error_line(test::run_gpt2q(other), "--lr", other);
  fs::remove_all(dir);
}

// An exploding run stops with an error naming the step instead of saving
// NaN weights as "best" and exiting 0; what was saved before stays.
TEST(CliFinetune, NonFiniteLossStopsTheRun) {
  const auto dir = test::temp_dir("ft_nan");
  const fs::path out = dir / "out";
  const std::string args = "finetune --init 64x1x2 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --train " +
                           shell_quote(ag_news_test_csv()) +
                           " --eval-split 0.2 --limit 48 --epochs 2 --batch-size 8 --lr 1e30 --max-length 24"
                           " --seed 3 --save-every 1 --quiet --out " +
                           shell_quote(out);
  const auto r = test::run_gpt2q(args);
  expect_one_error_line(r, "training stopped", args);
  EXPECT_NE(r.err.find("try a lower --lr"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the checkpoints written before it are kept"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(out / "resume" / "state.safetensors"));
  fs::remove_all(dir);
}

// SIGKILL at whatever moment the run has reached once its first state is
// written: the resumed run must still end with the uninterrupted run's bytes.
TEST(CliFinetune, KilledRunResumesBitForBit) {
  const auto dir = test::temp_dir("ft_kill");
  const fs::path whole = dir / "whole", killed = dir / "killed";
  const std::string extra = "--save-every 2";
  const auto w = test::run_gpt2q(tiny_ag_run(whole, extra));
  ASSERT_EQ(w.exit_code, 0) << w.err;

  const fs::path pid_file = dir / "pid";
  const std::string start = "'" + test::gpt2q_binary().string() + "' " + tiny_ag_run(killed, extra) +
                            " >/dev/null 2>&1 </dev/null & echo $! > '" + pid_file.string() + "'";
  ASSERT_EQ(std::system(start.c_str()), 0);
  const pid_t pid = std::stoi(read_file(pid_file));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(killed / "resume" / "state.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGKILL);
  while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));

  const auto r = test::run_gpt2q(tiny_ag_run(killed, extra + " --resume"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(read_file(whole / "model.safetensors") == read_file(killed / "model.safetensors"));
  EXPECT_TRUE(read_file(whole / "last" / "model.safetensors") == read_file(killed / "last" / "model.safetensors"));
  // No temp files left behind in the checkpoint dirs after the resumed run's rewrites.
  for (const fs::path& d : {killed, killed / "last", killed / "resume"})
    for (const auto& e : fs::directory_iterator(d))
      if (e.is_regular_file()) {
        EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
      }
  fs::remove_all(dir);
}

TEST(CliFinetune, LanguageModelRunWritesAnLMCheckpoint) {
  const auto dir = test::temp_dir("ft_lm");
  const std::string text = read_file(test::data_dir() / "wikitext-2-raw" / "wiki.test.raw").substr(0, 6000);
  write_file_atomic(dir / "train.txt", text);
  const auto r = test::run_gpt2q("finetune --task lm --init 64x1x2 --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                                 " --train " + shell_quote(dir / "train.txt") +
                                 " --eval-split 0.25 --epochs 2 --batch-size 4 --lr 2e-3 "
                                 "--max-length 32 --quiet --json --out " +
                                 shell_quote(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "GPT2LMHeadModel");
  ASSERT_TRUE(j["last_eval"].contains("perplexity"));
  EXPECT_GT(j["eval_examples"].get<int>(), 0);
  auto m = GPT2Model::load(dir / "out");
  EXPECT_EQ(m->kind(), ModelKind::CausalLM);
  fs::remove_all(dir);
}

}  // namespace
