// Hostile input files through `gpt2q info` and `gpt2q tokenize`: JSON nested
// 200,000 levels deep (which once overflowed the stack when copied or
// printed), files far above any real config's size, a FIFO where a file
// should be (which once blocked open() forever) and an empty merges.txt.
// Each gives one error line naming the file and exit status 1, promptly.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <map>

#include "core/file_util.h"
#include "support/test_env.h"

namespace fs = std::filesystem;
using namespace gpt2q::test;

namespace {

constexpr size_t kDeep = 200'000;

// `[[[...]]]`, nested `levels` deep.
std::string deep_array(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }

// `text` (a JSON object) with "x": <200,000 levels of arrays> as its first member.
std::string with_deep_member(const std::string& text) {
  const size_t brace = text.find('{');
  return text.substr(0, brace + 1) + "\"x\": " + deep_array(kDeep) + ", " + text.substr(brace + 1);
}

void expect_one_error_line(const CommandResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err.substr(0, 300);
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err.substr(0, 300);
  EXPECT_LT(r.err.size(), 400u) << "error messages quote values briefly";
}

// fake_gpt2's files in a fresh directory, `replace` written over some.
fs::path checkpoint_with(const std::string& tag, const std::map<std::string, std::string>& replace) {
  const fs::path dir = temp_dir("untrusted_" + tag);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fake_gpt2_dir() / f, dir / f);
  for (const auto& [name, bytes] : replace) gpt2q::write_file_atomic(dir / name, bytes);
  return dir;
}

fs::path tokenizer_with(const std::string& tag, const std::map<std::string, std::string>& replace) {
  const fs::path dir = temp_dir("untrusted_tok_" + tag);
  for (const char* f : {"vocab.json", "merges.txt"}) fs::copy_file(gpt2_tokenizer_dir() / f, dir / f);
  for (const auto& [name, bytes] : replace) gpt2q::write_file_atomic(dir / name, bytes);
  return dir;
}

// A file of `size` zero bytes that takes no disk space.
void write_sparse(const fs::path& p, uint64_t size) {
  fs::remove(p);
  gpt2q::write_file_atomic(p, "");
  fs::resize_file(p, size);
}

CommandResult tokenize_with(const fs::path& tokenizer_dir) {
  const fs::path in = temp_dir("untrusted_in") / "in.txt";
  gpt2q::write_file_atomic(in, "hello world\n");
  return run_gpt2q("tokenize --tokenizer " + shell_quote(tokenizer_dir) + " --file " + shell_quote(in));
}

}  // namespace

TEST(UntrustedFiles, DeeplyNestedConfigJson) {
  const fs::path dir =
      checkpoint_with("deep_config", {{"config.json", with_deep_member(read_text(fake_gpt2_dir() / "config.json"))}});
  expect_one_error_line(run_gpt2q("info " + shell_quote(dir)), "config.json: JSON nested deeper than 64 levels");
  fs::remove_all(dir);
}

TEST(UntrustedFiles, DeeplyNestedSafetensorsShape) {
  const std::string bytes = read_text(fake_gpt2_dir() / "model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  std::string header = bytes.substr(8, n);
  const size_t shape = header.find("\"shape\":");
  ASSERT_NE(shape, std::string::npos);
  const size_t end = header.find(']', shape);
  header.replace(shape + 8, end + 1 - (shape + 8), deep_array(kDeep));
  std::string le(8, '\0');
  for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  const fs::path dir = checkpoint_with("deep_shape", {{"model.safetensors", le + header + bytes.substr(8 + n)}});
  expect_one_error_line(run_gpt2q("info " + shell_quote(dir)),
                        "model.safetensors: header: JSON nested deeper than 64 levels");
  fs::remove_all(dir);
}

TEST(UntrustedFiles, InvalidJsonIsOneShortLine) {
  // nlohmann quotes the whole offending token; a megabyte-long one stays out.
  const fs::path dir = checkpoint_with("long_token", {{"config.json", "{\"a\": \"" + std::string(1 << 20, 'x')}});
  expect_one_error_line(run_gpt2q("info " + shell_quote(dir)), "config.json: invalid JSON: ");
  fs::remove_all(dir);
}

TEST(UntrustedFiles, OversizedConfigJson) {
  const fs::path dir = checkpoint_with("big_config", {});
  write_sparse(dir / "config.json", (uint64_t{16} << 20) + 1);
  expect_one_error_line(run_gpt2q("info " + shell_quote(dir)),
                        "config.json: 16777217 bytes, more than the 16777216 allowed for a config file");
  fs::remove_all(dir);
}

TEST(UntrustedFiles, FifoInsteadOfModelSafetensorsFailsFast) {
  const fs::path dir = temp_dir("untrusted_fifo");
  fs::copy_file(fake_gpt2_dir() / "config.json", dir / "config.json");
  ASSERT_EQ(::mkfifo((dir / "model.safetensors").c_str(), 0600), 0);
  // timeout(1): without the fix, open() waits for a writer forever.
  const fs::path err = dir / "stderr";
  const std::string cmd = "timeout 60 " + shell_quote(gpt2q_binary()) + " info " + shell_quote(dir) +
                          " >/dev/null 2>" + shell_quote(err) + " </dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_text(err);
  expect_one_error_line(r, "model.safetensors: not a regular file");
  EXPECT_LT(seconds, 30.0);
  fs::remove_all(dir);
}

TEST(UntrustedFiles, DeeplyNestedVocabJson) {
  const fs::path dir = tokenizer_with("deep_vocab", {{"vocab.json", "{\"a\": " + deep_array(kDeep) + "}"}});
  expect_one_error_line(tokenize_with(dir), "vocab.json: JSON nested deeper than 64 levels");
  fs::remove_all(dir);
}

TEST(UntrustedFiles, OversizedVocabJson) {
  const fs::path dir = tokenizer_with("big_vocab", {});
  write_sparse(dir / "vocab.json", (uint64_t{64} << 20) + 1);
  expect_one_error_line(tokenize_with(dir),
                        "vocab.json: 67108865 bytes, more than the 67108864 allowed for a tokenizer file");
  fs::remove_all(dir);
}

TEST(UntrustedFiles, EmptyMergesTxt) {
  const fs::path dir = tokenizer_with("empty_merges", {{"merges.txt", ""}});
  expect_one_error_line(tokenize_with(dir), "merges.txt: empty file");
  fs::remove_all(dir);
  // Only the header: a vocabulary without merges, odd but legal.
  const fs::path header_only = tokenizer_with("header_merges", {{"merges.txt", "#version: 0.2\n"}});
  const CommandResult r = tokenize_with(header_only);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  fs::remove_all(header_only);
}
