#pragma once
// Where tests find their inputs. Shared data (../shared/data) can be moved with
// the GPT2Q_DATA environment variable; committed fixtures live in tests/fixtures.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gpt2q::test {

std::filesystem::path data_dir();      // $GPT2Q_DATA or <repo>/../shared/data
std::filesystem::path fixtures_dir();  // <repo>/tests/fixtures
std::filesystem::path gpt2q_binary();  // the built CLI
std::filesystem::path temp_dir(const std::string& tag);  // fresh, unique, under $TMPDIR

// Inputs under data_dir() that several tests use.
std::filesystem::path ag_news_test_csv();    // ag_news/test.csv
std::filesystem::path gpt2_tokenizer_dir();  // gpt2-tokenizer (vocab.json + merges.txt)
std::filesystem::path fake_gpt2_dir();       // tiny-gpt2/fake_gpt2

// A whole file's bytes; "" when it cannot be read (tests then fail on the content).
std::string read_text(const std::filesystem::path& p);

// `p` in single quotes, for the command lines given to run_gpt2q (test paths hold no quote).
std::string shell_quote(const std::filesystem::path& p);

struct CommandResult {
  int exit_code = 0;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the gpt2q binary with `args` (already shell-quoted by the caller).
CommandResult run_gpt2q(const std::string& args);

// `gpt2q init ARGS --out OUT`: a small random model to run the CLI on.
CommandResult init_model(const std::filesystem::path& out, const std::string& args);

// Adds a GoogleTest failure unless |got - want| <= rtol * (|want| + scale)
// for every element, scale being the mean |want|: elementwise relative
// error, except that values near zero (cancellation) are judged against the
// typical magnitude of the output. Both fp32 host tensors of one shape.
// Returns the worst relative error seen.
double expect_close(const gpt2q::Tensor& got, const gpt2q::Tensor& want, double rtol, const std::string& what);

// n values from N(0, sd²), mt19937 seeded with `seed` (reproducible test data).
std::vector<float> normal_values(int64_t n, float sd, uint32_t seed);

}  // namespace gpt2q::test
