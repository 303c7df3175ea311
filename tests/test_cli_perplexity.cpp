// `gpt2q perplexity` end to end on ../shared/data/tiny-gpt2/fake_gpt2 (a
// GPT2LMHeadModel with its own tokenizer files): against transformers numbers
// (tests/fixtures/eval/perplexity_fake_gpt2.json, tools/make_perplexity_fixture.py),
// the human output format, and bad inputs.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/checkpoint.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "text/tokenizer.h"
#include "core/file_util.h"
#include "support/test_env.h"

namespace gpt2q {
namespace {

using namespace gpt2q::test;

namespace fs = std::filesystem;

nlohmann::json load_fixture() {
  std::ifstream in(test::fixtures_dir() / "eval" / "perplexity_fake_gpt2.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

class CliPerplexity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(test::temp_dir("cli_ppl"));
    // The fixture's text: the first N lines of WikiText-2 raw test, newlines kept.
    auto fx = load_fixture();
    std::ifstream in(test::data_dir() / "wikitext-2-raw" / "wiki.test.raw", std::ios::binary);
    std::string text, line;
    for (int i = 0; i < fx["lines"].get<int>() && std::getline(in, line); ++i) text += line + "\n";
    write_file_atomic(*root_ / "wiki20.txt", text);

    GPT2Config cfg;
    cfg.vocab_size = 50257;
    cfg.n_positions = 64;
    cfg.n_embd = 8;
    cfg.n_head = 2;
    cfg.n_layer = 1;
    Checkpoint lm = make_synthetic_checkpoint(cfg, ModelKind::CausalLM, 5);
    save_checkpoint(*root_ / "lm64", cfg, ModelKind::CausalLM, {lm.tensors.begin(), lm.tensors.end()});
    cfg.id2label = {"neg", "pos"};
    Checkpoint clf = make_synthetic_checkpoint(cfg, ModelKind::SequenceClassification, 5);
    save_checkpoint(*root_ / "clf", cfg, ModelKind::SequenceClassification, {clf.tensors.begin(), clf.tensors.end()});
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static fs::path* root_;
};
fs::path* CliPerplexity::root_ = nullptr;

TEST_F(CliPerplexity, MatchesTransformers) {
  auto fx = load_fixture();
  for (const auto& want : fx["results"]) {
    int64_t L = want["max_length"], S = want["stride"];
    SCOPED_TRACE(testing::Message() << "max_length " << L << " stride " << S);
    auto r = test::run_gpt2q("perplexity --model " + shell_quote(fake_gpt2_dir()) + " --text " +
                             shell_quote(*root_ / "wiki20.txt") + " --max-length " + std::to_string(L) + " --stride " +
                             std::to_string(S) + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    for (const char* key : {"tokens", "nll", "ppl", "windows", "max_length", "stride", "seconds"})
      EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["text_tokens"], fx["text_tokens"]);
    EXPECT_EQ(j["tokens"], want["tokens"]);
    EXPECT_EQ(j["windows"], want["windows"]);
    EXPECT_EQ(j["max_length"], L);
    EXPECT_EQ(j["stride"], S);
    EXPECT_NEAR(j["nll"].get<double>(), want["nll"].get<double>(), 1e-6);
    EXPECT_NEAR(j["ppl"].get<double>(), want["ppl"].get<double>(), 1e-6 * want["ppl"].get<double>());
  }
}

TEST_F(CliPerplexity, DefaultsAndHumanOutput) {
  auto r = test::run_gpt2q("perplexity --model " + shell_quote(fake_gpt2_dir()) + " --text " +
                           shell_quote(*root_ / "wiki20.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("Final estimate: PPL = ([0-9]+\\.[0-9]{4})\n"))) << r.out;
  auto fx = load_fixture();
  const auto& want = fx["results"][0];  // the defaults: n_positions 1024, stride 512
  ASSERT_EQ(want["max_length"], 1024);
  ASSERT_EQ(want["stride"], 512);
  EXPECT_NEAR(std::stod(m[1].str()), want["ppl"].get<double>(), 1e-3);
  EXPECT_NE(r.out.find("stride 512"), std::string::npos) << r.out;
}

TEST_F(CliPerplexity, TokenizerFallbackDir) {
  auto r = test::run_gpt2q("perplexity --model " + shell_quote(*root_ / "lm64") + " --text " +
                           shell_quote(*root_ / "wiki20.txt") + " --tokenizer " +
                           shell_quote(test::data_dir() / "gpt2-tokenizer") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["max_length"], 64);
  EXPECT_EQ(j["stride"], 32);
  EXPECT_EQ(j["tokens"].get<int64_t>(), j["text_tokens"].get<int64_t>() - 1);
}

// --compute-dtype bf16 on an fp32 checkpoint (tests/fixtures/models/tiny-lm,
// a transformers GPT2LMHeadModel): the same NLL as the library with a CPU
// bf16 placement, close to fp32's and not equal to it.
TEST_F(CliPerplexity, ComputeDtypeBf16OnADenseCheckpoint) {
  const fs::path model = test::fixtures_dir() / "models" / "tiny-lm";
  const std::string cmd = "perplexity --model " + shell_quote(model) + " --tokenizer " +
                          shell_quote(test::data_dir() / "gpt2-tokenizer") + " --text " +
                          shell_quote(*root_ / "wiki20.txt") + " --json";
  auto r = test::run_gpt2q(cmd + " --compute-dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto bf = nlohmann::json::parse(r.out);
  EXPECT_EQ(bf["device"]["compute_dtype"], "cpu (bf16)");
  r = test::run_gpt2q(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto f32 = nlohmann::json::parse(r.out);
  EXPECT_EQ(f32["device"]["compute_dtype"], "cpu");
  ASSERT_EQ(bf["tokens"], f32["tokens"]);
  ASSERT_GE(bf["max_length"].get<int64_t>(), 16) << "windows of 16+ tokens take the bf16 products";

  const auto ids = Tokenizer::load(test::data_dir() / "gpt2-tokenizer").encode(read_text(*root_ / "wiki20.txt"));
  PerplexityOptions opts;
  opts.progress = false;
  const auto lib = evaluate_perplexity(*GPT2Model::load(model, Placement{Device::CPU, DType::BF16}), ids, opts);
  EXPECT_NEAR(bf["nll"].get<double>(), lib.nll, 1e-12 * lib.nll);
  // The NLL of a token moves by at most twice the largest change of a logit;
  // with bf16's 2^-9 relative rounding per operand and this model's O(1)
  // logits that is well under 0.01 nats (measured: ~1.5e-4).
  const double d = std::fabs(bf["nll"].get<double>() - f32["nll"].get<double>());
  EXPECT_LT(d, 0.01);
  EXPECT_GT(d, 0.0) << "bf16 compute changed nothing";
}

TEST_F(CliPerplexity, BadInputsFailWithOneLine) {
  const fs::path& d = *root_;
  write_file_atomic(d / "empty.txt", "");
  write_file_atomic(d / "bad.txt", "valid start \xc3\x28 then junk");
  write_file_atomic(d / "one.txt", "a");
  const std::string model = " --model " + shell_quote(fake_gpt2_dir());
  const std::string text = " --text " + shell_quote(d / "wiki20.txt");
  struct BadCase {
    std::string name, args, expect;
  };
  std::vector<BadCase> cases = {
      {"missing text", model + " --text " + shell_quote(d / "nope.txt"), "nope.txt"},
      {"empty text", model + " --text " + shell_quote(d / "empty.txt"), "empty.txt"},
      {"invalid utf8", model + " --text " + shell_quote(d / "bad.txt"), "bad.txt"},
      {"one token", model + " --text " + shell_quote(d / "one.txt"), "one.txt"},
      {"max length 0", model + text + " --max-length 0", "--max-length"},
      {"max length too big", model + text + " --max-length 1025", "--max-length"},
      {"stride 0", model + text + " --stride 0", "--stride"},
      {"stride too big", model + text + " --max-length 16 --stride 17", "--stride"},
      {"missing model", " --model " + shell_quote(d / "no_model") + text, "no_model"},
      {"classifier",
       " --model " + shell_quote(d / "clf") + text + " --tokenizer " + shell_quote(test::data_dir() / "gpt2-tokenizer"),
       "perplexity needs a GPT2LMHeadModel"},
      {"no tokenizer", " --model " + shell_quote(d / "lm64") + text, "has no tokenizer files"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = test::run_gpt2q("perplexity" + c.args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_EQ(r.err.rfind("gpt2q: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace gpt2q
