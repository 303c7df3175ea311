// `gpt2q pipeline` end to end on a tiny GPT-2 and a few AG News rows: every
// stage's artefact, the held-out rows equal to fine-tuning's split, resuming
// (finished stages reused, nothing retrained), --force, settings that changed,
// a config file, missing data (the message says what to fetch) and bad
// variants (nothing written).
#include <gtest/gtest.h>

#include <chrono>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/test_env.h"

namespace {

using namespace gpt2q::test;

namespace fs = std::filesystem;
using nlohmann::json;

// A small, fast run: 48 training and 48 held-out texts, one epoch of a 32x1x2 GPT-2.
std::string pipeline(const fs::path& out, const std::string& extra = "",
                     const std::string& variants = "fp32,int8-tensor,nf4") {
  return "pipeline --data " + shell_quote(ag_news_test_csv()) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
         " --init 32x1x2 --epochs 1 " + "--batch-size 16 --max-length 32 --limit 48 --variants " + variants +
         " --quiet --json --out " + shell_quote(out) + " " + extra;
}

TEST(CliPipeline, RunsEveryStageThenReusesThem) {
  const fs::path out = gpt2q::test::temp_dir("cli_pipeline") / "run";
  auto r = run_gpt2q(pipeline(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json s = json::parse(r.out);
  const auto& st = s["stages"];

  // Fine-tuning ran from scratch, on the seeded 80%, evaluated on the other 20% (limited to 48).
  EXPECT_FALSE(st["finetune"]["resumed"].get<bool>());
  EXPECT_EQ(st["finetune"]["train_examples"], 48);
  EXPECT_EQ(st["finetune"]["eval_examples"], 48);
  EXPECT_TRUE(fs::exists(out / "finetune" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(out / "finetune" / "train_log.jsonl"));

  // The held-out file has exactly those 48 rows, none of them a training row of the split.
  const std::string heldout = read_text(out / "data" / "heldout.jsonl");
  EXPECT_EQ(std::count(heldout.begin(), heldout.end(), '\n'), 48);

  // A checkpoint per quantized variant, loadable by `gpt2q info`.
  ASSERT_EQ(st["quantize"].size(), 2u);
  for (const auto& v : st["quantize"]) {
    EXPECT_FALSE(v["reused"].get<bool>());
    auto info = run_gpt2q("info --json " + shell_quote(v["dir"].get<std::string>()));
    EXPECT_EQ(info.exit_code, 0) << info.err;
  }

  // The report compares the three variants on the held-out rows; its accuracy
  // for fp32 equals fine-tuning's own evaluation of the same rows.
  const json results = json::parse(read_text(out / "report" / "results.json"));
  ASSERT_EQ(results["variants"].size(), 3u);
  for (const char* f : {"report.md", "report.html", "results.csv", "confusion_fp32.csv"})
    EXPECT_TRUE(fs::exists(out / "report" / f)) << f;
  const double fp32_acc = st["compare"]["variants"][0]["accuracy"].get<double>();
  EXPECT_NEAR(fp32_acc, st["finetune"]["last_eval"]["accuracy"].get<double>(), 1e-12);

  // Again: nothing is retrained or re-quantized, the report is rebuilt from the cache.
  const auto mtime = fs::last_write_time(out / "finetune" / "model.safetensors");
  r = run_gpt2q(pipeline(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json again = json::parse(r.out);
  EXPECT_EQ(again["stages"]["finetune"]["steps_run"], 0);
  for (const auto& v : again["stages"]["quantize"]) EXPECT_TRUE(v["reused"].get<bool>());
  EXPECT_EQ(fs::last_write_time(out / "finetune" / "model.safetensors"), mtime);
  EXPECT_EQ(again["stages"]["compare"]["variants"], st["compare"]["variants"]);

  // Other settings in the same OUT: one error line naming OUT and the setting.
  r = run_gpt2q(pipeline(out, "--lr 0.5"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("lr"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(out.string()), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  // --force starts over with the new settings.
  r = run_gpt2q(pipeline(out, "--lr 0.5 --force"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(json::parse(r.out)["stages"]["finetune"]["steps_run"].get<int>(), 0);
}

TEST(CliPipeline, ReadsAConfigFile) {
  const fs::path dir = gpt2q::test::temp_dir("cli_pipeline_cfg");
  {
    std::ofstream cfg(dir / "pipeline.toml");
    cfg << "init = \"32x1x2\"\nepochs = 1\nbatch-size = 16\nmax-length = 32\nlimit = 16\n"
        << "variants = \"fp32,fp4\"\n";
  }
  auto r = run_gpt2q("pipeline --config " + shell_quote(dir / "pipeline.toml") + " --data " +
                     shell_quote(ag_news_test_csv()) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                     " --quiet --json --out " + shell_quote(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_EQ(s["stages"]["finetune"]["train_examples"], 16);
  ASSERT_EQ(s["stages"]["compare"]["variants"].size(), 2u);
  EXPECT_EQ(s["stages"]["compare"]["variants"][1]["variant"], "fp4");
}

// Hostile config files end fast with one short line: CLI11's reader is
// superlinear in a key's dotted parts, and its errors echo whole lines.
TEST(CliPipeline, BoundsTheConfigFile) {
  const fs::path dir = gpt2q::test::temp_dir("cli_pipeline_cfg_bad");
  std::string dotted = "[a";
  for (int i = 0; i < 100000; ++i) dotted += ".b";
  struct Case {
    std::string name, text, needle;
  };
  const std::vector<Case> cases = {
      {"dotted.toml", dotted + "]\nepochs = 1\n", "line 1 has 200003 characters"},
      {"section.toml", dotted.substr(0, 2001) + "]\nepochs = 1\n", "line 1: key '[a.b.b"},
      {"dotted_key.toml", dotted.substr(1, 30) + " = 1\n", "more than 9 dotted parts"},
      {"long_line.toml", "epochs = \"" + std::string(600000, '1') + "\"\n", "line 1 has 600011 characters"},
      {"big.toml", "# " + std::string(2 << 20, 'x') + "\n", "more than the 1048576"},
      {"unknown.toml", std::string(5000, 'k') + "\n", "line 1 has 5000 characters"},
      {"unknown2.toml", std::string(3000, 'k') + " = 1\n", "unknown option 'kkkk"},
  };
  for (const auto& c : cases) {
    std::ofstream(dir / c.name) << c.text;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_gpt2q("pipeline --config " + shell_quote(dir / c.name) + " --data " + shell_quote(ag_news_test_csv()) +
                       " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --out " + shell_quote(dir / "out"));
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0) << c.name;
    EXPECT_EQ(r.exit_code, 1) << c.name;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.name << ": " << r.err.substr(0, 300);
    EXPECT_LT(r.err.size(), 600u) << c.name;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.name;
    EXPECT_FALSE(fs::exists(dir / "out")) << c.name;
  }
}

TEST(CliPipeline, MissingDataSaysWhatToFetch) {
  const fs::path dir = gpt2q::test::temp_dir("cli_pipeline_nodata");
  auto r = run_gpt2q("pipeline --data " + shell_quote(dir / "ag_news" / "test.csv") + " --tokenizer " +
                     shell_quote(gpt2_tokenizer_dir()) + " --out " + shell_quote(dir / "out"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("AG News"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((dir / "ag_news" / "test.csv").string()), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(CliPipeline, BadVariantWritesNothing) {
  const fs::path dir = gpt2q::test::temp_dir("cli_pipeline_badvariant");
  auto r = run_gpt2q(pipeline(dir / "out", "", "fp32,nf5"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("nf5"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

// LM pre-training on several texts (issue 13: WikiText-2 valid and
// tiny-shakespeare) joins them, in order, into OUT/data/pretrain.txt; the
// evaluation text itself is refused before anything is written.
TEST(CliPipeline, PretrainsOnSeveralTextsButNeverOnWikiTextTest) {
  const fs::path dir = gpt2q::test::temp_dir("cli_pipeline_pretrain");
  write_file(dir / "a.txt", "The first text of the pre-training.\n");
  write_file(dir / "b.txt", "And the second one, which follows it");
  const fs::path out = dir / "run";
  auto r = run_gpt2q(pipeline(out, "--pretrain-text " + shell_quote(dir / "a.txt") + " --pretrain-text " +
                                       shell_quote(dir / "b.txt") + " --pretrain-epochs 1",
                              "fp32"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(out / "data" / "pretrain.txt"),
            "The first text of the pre-training.\nAnd the second one, which follows it");
  const json s = json::parse(r.out);
  EXPECT_TRUE(s["stages"].contains("pretrain")) << s.dump();
  EXPECT_TRUE(fs::exists(out / "pretrain" / "model.safetensors"));
  // After its own pre-training the fine-tuning takes the pretrained recipe
  // (no warmup, no weight decay) at 1e-4, except what the flags gave.
  const json settings = json::parse(read_text(out / "pipeline.json"))["settings"];
  EXPECT_DOUBLE_EQ(settings["lr"].get<double>(), 1e-4) << settings.dump();
  EXPECT_EQ(settings["warmup_steps"], 0) << settings.dump();
  EXPECT_DOUBLE_EQ(settings["weight_decay"].get<double>(), 0.0) << settings.dump();
  EXPECT_EQ(settings["epochs"], 1) << settings.dump();
  EXPECT_EQ(settings["max_length"], 32) << settings.dump();
  // The pre-training itself keeps the from-scratch warmup and weight decay.
  const json pretrain_args = json::parse(read_text(out / "pretrain" / "training_args.json"));
  EXPECT_EQ(pretrain_args["--warmup-steps"], 100) << pretrain_args.dump();
  EXPECT_DOUBLE_EQ(pretrain_args["--weight-decay"].get<double>(), 0.01) << pretrain_args.dump();

  write_file(dir / "wiki.test.raw", "evaluation text\n");
  const fs::path out2 = dir / "refused";
  r = run_gpt2q(pipeline(out2, "--pretrain-text " + shell_quote(dir / "wiki.test.raw")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("WikiText-2 test is the evaluation text"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out2));
  fs::remove_all(dir);
}
