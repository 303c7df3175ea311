// `gpt2q generate` stops after the model's eos_token_id by default, as
// transformers' generate does (the EOS id is the last id returned);
// --ignore-eos goes on, --stop-at-eos is the old opt-in, accepted as a no-op.
// The EOS id is chosen from the model's own greedy continuation, so the stop
// position is known without a hand-made model.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "support/test_env.h"

namespace {

using nlohmann::json;
using namespace gpt2q::test;
namespace fs = std::filesystem;

json last_line_json(const CommandResult& r) {
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const size_t nl = out.rfind('\n');
  return json::parse(nl == std::string::npos ? out : out.substr(nl + 1));
}

class CliGenerateEos : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("cli_generate_eos");
    const fs::path src = fixtures_dir() / "models" / "tiny-lm";
    fs::copy_file(src / "model.safetensors", dir_ / "model.safetensors");
    config_ = json::parse(read_text(src / "config.json"));
  }
  void set_eos(int64_t id) {
    config_["eos_token_id"] = id;
    std::ofstream(dir_ / "config.json") << config_.dump();
  }
  CommandResult run(const std::string& extra) {
    return run_gpt2q("generate --model " + shell_quote(dir_) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                     " --prompt 'The quick brown fox' --max-new-tokens 8 --json " + extra);
  }
  fs::path dir_;
  json config_;
};

TEST_F(CliGenerateEos, StopsAfterEosByDefaultAndIgnoreEosGoesOn) {
  set_eos(0);  // first pass: learn the continuation with EOS out of the way
  CommandResult full_r = run("--ignore-eos");
  ASSERT_EQ(full_r.exit_code, 0) << full_r.err;
  const json full = last_line_json(full_r);
  const auto ids = full.at("ids").get<std::vector<int64_t>>();
  const size_t prompt = full.at("prompt_tokens").get<size_t>();
  ASSERT_EQ(ids.size(), prompt + 8);
  // EOS := the third new token; generation must end at its first occurrence.
  const int64_t eos = ids[prompt + 2];
  const size_t stop = static_cast<size_t>(std::find(ids.begin() + prompt, ids.end(), eos) - ids.begin());
  ASSERT_LE(stop, prompt + 2);
  set_eos(eos);

  const CommandResult def = run("");
  ASSERT_EQ(def.exit_code, 0) << def.err;
  const std::vector<int64_t> want(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(stop) + 1);
  EXPECT_EQ(last_line_json(def).at("ids").get<std::vector<int64_t>>(), want);

  const CommandResult alias = run("--stop-at-eos");
  ASSERT_EQ(alias.exit_code, 0) << alias.err;
  EXPECT_EQ(last_line_json(alias).at("ids").get<std::vector<int64_t>>(), want);

  const CommandResult ignore = run("--ignore-eos");
  ASSERT_EQ(ignore.exit_code, 0) << ignore.err;
  EXPECT_EQ(last_line_json(ignore).at("ids").get<std::vector<int64_t>>(), ids);
}

TEST_F(CliGenerateEos, IgnoreEosAndStopAtEosTogetherIsAnError) {
  set_eos(50256);
  const CommandResult r = run("--ignore-eos --stop-at-eos");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--ignore-eos"), std::string::npos) << r.err;
}

TEST_F(CliGenerateEos, NonFiniteOrNegativeTemperatureIsOneShortError) {
  set_eos(50256);
  for (const char* t : {"inf", "-1", "nan", "0"}) {
    const CommandResult r = run(std::string("--temperature ") + t);
    EXPECT_EQ(r.exit_code, 2) << t;
    EXPECT_NE(r.err.find("must be a finite number > 0, got '" + std::string(t) + "'"), std::string::npos) << r.err;
    EXPECT_LT(r.err.size(), 200u) << r.err;  // no 309-digit bound
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
