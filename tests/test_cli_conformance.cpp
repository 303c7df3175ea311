// The gpt2q binary against transformers on the real-vocabulary fixtures
// (tools/make_fixtures.py): `generate --greedy --ignore-eos --json` gives
// transformers' greedy ids (and text; the fixtures ran with eos_token_id=None), `perplexity --json` its sliding-window tokens, NLL and
// perplexity on the same text file. The tokenizer comes from the shared data.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "support/test_env.h"

namespace {

using nlohmann::json;
using namespace gpt2q::test;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::filesystem::path models_dir() { return fixtures_dir() / "models"; }

json reference(const std::string& name) {
  std::ifstream in(models_dir() / (name + ".ref.json"));
  EXPECT_TRUE(in) << name;
  return json::parse(in);
}

std::string tokenizer_arg() { return " --tokenizer " + quote((data_dir() / "gpt2-tokenizer").string()); }

// stdout's last line as JSON (print_json writes one line).
json run_json(const std::string& args) {
  CommandResult r = run_gpt2q(args);
  EXPECT_EQ(r.exit_code, 0) << args << "\nstderr: " << r.err;
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const size_t nl = out.rfind('\n');
  return json::parse(nl == std::string::npos ? out : out.substr(nl + 1));
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::abs(b); }

class CliConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(CliConformance, GreedyGenerateMatchesTransformers) {
  const json ref = reference(GetParam());
  const auto model = quote((models_dir() / ref.at("dir").get<std::string>()).string());
  ASSERT_FALSE(ref.at("generate").empty());
  for (const auto& g : ref.at("generate")) {
    const std::string args = "generate --model " + model + " --prompt " + quote(g.at("prompt_text")) +
                             " --max-new-tokens " + std::to_string(g.at("max_new_tokens").get<int>()) +
                             " --greedy --ignore-eos --json" + tokenizer_arg();
    const json out = run_json(args);
    EXPECT_EQ(out.at("ids"), g.at("ids")) << args;
    EXPECT_EQ(out.at("text"), g.at("text")) << args;
  }
}

TEST_P(CliConformance, PerplexityMatchesTransformers) {
  const json ref = reference(GetParam());
  const auto model = quote((models_dir() / ref.at("dir").get<std::string>()).string());
  const json& ppl = ref.at("perplexity");
  // The fixture names a byte range of a shared data file; the CLI reads a file.
  const json& src = ppl.at("source");
  std::ifstream in(data_dir() / src.at("file").get<std::string>(), std::ios::binary);
  ASSERT_TRUE(in) << src.dump();
  std::string text(src.at("length").get<size_t>(), '\0');
  in.seekg(src.at("offset").get<std::streamoff>());
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  ASSERT_TRUE(in);
  const auto dir = temp_dir("cli_conformance");
  const auto text_path = dir / "text.txt";
  std::ofstream(text_path, std::ios::binary) << text;

  for (const auto& run : ppl.at("runs")) {
    const std::string args = "perplexity --model " + model + " --text " + quote(text_path.string()) +
                             " --max-length " + std::to_string(run.at("max_length").get<int>()) + " --stride " +
                             std::to_string(run.at("stride").get<int>()) + " --json" + tokenizer_arg();
    const json out = run_json(args);
    EXPECT_EQ(out.at("text_tokens"), ppl.at("n_ids")) << args;
    EXPECT_EQ(out.at("tokens"), run.at("tokens")) << args;
    EXPECT_EQ(out.at("windows"), run.at("windows")) << args;
    EXPECT_LE(rel_diff(out.at("nll").get<double>(), run.at("nll").get<double>()), 1e-4) << args;
    EXPECT_LE(rel_diff(out.at("ppl").get<double>(), run.at("ppl").get<double>()), 1e-4) << args;
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(TextFixtures, CliConformance, ::testing::Values("tiny-lm", "trained-lm"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
