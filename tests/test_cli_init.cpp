// `gpt2q init` writes a checkpoint that our own loader accepts with the right
// kind and parameter count (counted independently from the geometry here),
// and rejects bad arguments with one line and a non-zero exit.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_env.h"

using gpt2q::test::run_gpt2q;

TEST(CliInit, ClassifierLoadsWithExpectedParameterCount) {
  auto dir = gpt2q::test::temp_dir("init") / "clf";
  auto r = run_gpt2q("init --geometry 16x2x4 --n-positions 64 --task classify --out '" + dir.string() + "' --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = run_gpt2q("info '" + dir.string() + "' --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto j = nlohmann::json::parse(info.out);
  const int64_t V = 50257, P = 64, C = 16, L = 2, K = 4;
  const int64_t block = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C);
  const int64_t expected = V * C + P * C + L * block + 2 * C + K * C;
  EXPECT_EQ(nlohmann::json::parse(r.out)["parameters"].get<int64_t>(), expected);
  EXPECT_NE(info.out.find(std::to_string(expected)), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("GPT2ForSequenceClassification"), std::string::npos) << info.out;
}

TEST(CliInit, BadArgumentsFailWithOneLine) {
  auto dir = gpt2q::test::temp_dir("init_bad");
  for (const char* args : {"--geometry 12x5", "--geometry 10x2x3", "--task translate", "--task classify --labels OnlyOne",
                           "--task classify --labels a,a,b"}) {
    auto r = run_gpt2q(std::string("init ") + args + " --out '" + (dir / "m").string() + "'");
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "m")) << args;
  }
}

TEST(CliInit, RepeatedLabelNamesAreRefused) {
  auto dir = gpt2q::test::temp_dir("init_dup");
  auto r = run_gpt2q("init --task classify --labels a,a,b --out '" + (dir / "m").string() + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --labels: label 'a' is given twice\n");
}
