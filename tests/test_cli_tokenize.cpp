// gpt2q tokenize: one {"ids":[...]} line per input line, from --file or
// stdin; the ids must be the library's (which test_text_tokenizer_hf checks
// against HF). Errors: one line and exit 1; bad arguments: exit 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "support/test_env.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace {

using namespace gpt2q::test;

std::vector<std::vector<int32_t>> parse_output(const std::string& out) {
  std::vector<std::vector<int32_t>> rows;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.size(), 1u) << line;
    rows.push_back(j.at("ids").get<std::vector<int32_t>>());
  }
  return rows;
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(gpt2_tokenizer_dir() / "vocab.json")) GTEST_SKIP() << gpt2_tokenizer_dir() << " is missing";
    dir_ = gpt2q::test::temp_dir("cli_tokenize");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Lines as the command should see them: split on '\n', no final empty line.
  const std::vector<std::string> lines_ = {"Hello world", "", "  two  spaces ", "a<|endoftext|>b", "tab\tand\r",
                                           "Ünïcödé 🦙 text", "last line without newline"};
  std::string input() const {
    std::string s;
    for (size_t i = 0; i < lines_.size(); ++i) s += lines_[i] + (i + 1 < lines_.size() ? "\n" : "");
    return s;
  }
  std::vector<std::vector<int32_t>> expected() const {
    auto tok = gpt2q::Tokenizer::load(gpt2_tokenizer_dir());
    std::vector<std::vector<int32_t>> ids;
    for (const auto& l : lines_) ids.push_back(tok.encode(l));
    return ids;
  }
  fs::path dir_;
};

TEST_F(TokenizeCli, OneJsonLinePerLineOfFile) {
  const fs::path in = dir_ / "in.txt";
  gpt2q::write_file_atomic(in, input());
  auto r = gpt2q::test::run_gpt2q("tokenize --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --file " +
                                  shell_quote(in));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(parse_output(r.out), expected());
  // A trailing newline ends the last line; it does not start another.
  gpt2q::write_file_atomic(in, input() + "\n");
  auto r2 = gpt2q::test::run_gpt2q("tokenize --json --tokenizer " + shell_quote(gpt2_tokenizer_dir()) + " --file " +
                                   shell_quote(in));
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_EQ(r2.out, r.out);
}

TEST_F(TokenizeCli, ReadsStdinAndFindsTokenizerInModelDir) {
  const fs::path in = dir_ / "in.txt", out = dir_ / "out.txt";
  gpt2q::write_file_atomic(in, input());
  const fs::path model = gpt2q::test::data_dir() / "tiny-gpt2" / "fake_gpt2";
  std::string cmd = shell_quote(gpt2q::test::gpt2q_binary()) + " tokenize --model " + shell_quote(model) + " <" +
                    shell_quote(in) + " >" + shell_quote(out);
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(parse_output(gpt2q::read_file(out)), expected());
  // Empty input: no lines, no output.
  auto r = gpt2q::test::run_gpt2q("tokenize --tokenizer " + shell_quote(gpt2_tokenizer_dir()));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

void expect_one_error_line(const gpt2q::test::CommandResult& r, int code, const std::string& part) {
  EXPECT_EQ(r.exit_code, code);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("gpt2q: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
}

TEST_F(TokenizeCli, Errors) {
  const std::string tok = " --tokenizer " + shell_quote(gpt2_tokenizer_dir());
  expect_one_error_line(gpt2q::test::run_gpt2q("tokenize --bogus" + tok), 2, "--bogus");
  expect_one_error_line(gpt2q::test::run_gpt2q("tokenize"), 1, "--tokenizer");
  expect_one_error_line(gpt2q::test::run_gpt2q("tokenize --model " + shell_quote(dir_)), 1, dir_.string());
  expect_one_error_line(gpt2q::test::run_gpt2q("tokenize --tokenizer " + shell_quote(dir_)), 1, "no tokenizer files");
  expect_one_error_line(gpt2q::test::run_gpt2q("tokenize" + tok + " --file " + shell_quote(dir_ / "nope.txt")), 1,
                        "nope.txt: no such file");
  const fs::path bad = dir_ / "bad.txt";
  gpt2q::write_file_atomic(bad, "fine\nbro\xc3ken\n");
  expect_one_error_line(gpt2q::test::run_gpt2q("tokenize" + tok + " --file " + shell_quote(bad)), 1,
                        bad.string() + ":2: invalid UTF-8 at byte 3");
}

}  // namespace
