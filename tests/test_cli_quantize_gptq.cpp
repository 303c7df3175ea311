// `gpt2q quantize --method rtn / gptq` as a user runs it: the round trip
// through a checkpoint that loads and runs, GPTQ's layer error against
// round-to-nearest's, determinism, and the errors of bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_env.h"

using namespace gpt2q::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

const fs::path& model_dir() {
  static const fs::path dir = [] {
    const fs::path d = temp_dir("cli_gptq_model") / "lm";
    const auto r = init_model(d, "--geometry 64x2x2 --task lm --n-positions 128 --seed 3");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return d;
  }();
  return dir;
}

fs::path shakespeare() { return data_dir() / "text" / "tinyshakespeare_input.txt"; }

std::string tok() { return " --tokenizer " + shell_quote(gpt2_tokenizer_dir()); }

CommandResult quantize(const std::string& args, const fs::path& out) {
  return run_gpt2q("quantize --model " + shell_quote(model_dir()) + " --out " + shell_quote(out) + " " + args);
}

std::string gptq_args(const std::string& extra = "", const std::string& seqlen = "64") {
  return "--method gptq --bits 4 --group-size 32 --calibration " + shell_quote(shakespeare()) + tok() +
         " --nsamples 8 --seqlen " + seqlen + " --json " + extra;
}

double perplexity(const fs::path& model) {
  const fs::path text = temp_dir("cli_gptq_text") / "t.txt";
  std::ofstream(text) << "First Citizen:\nBefore we proceed any further, hear me speak.\nAll: Speak, speak.\n";
  const auto r = run_gpt2q("perplexity --model " + shell_quote(model) + " --text " + shell_quote(text) + tok() +
                           " --max-length 32 --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? json::parse(r.out).at("ppl").get<double>() : 0.0;
}

TEST(CliQuantizeGptq, RtnRoundTripLoadsAndRuns) {
  const fs::path out = temp_dir("cli_rtn") / "q";
  const auto r = quantize("--method rtn --bits 3 --group-size 32 --json", out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("quantization_config").at("gpt2q_method"), "rtn");
  EXPECT_EQ(j.at("quantization_config").at("bits"), 3);
  EXPECT_EQ(j.at("tensors").size(), 8u);
  EXPECT_EQ(j.at("tensors")[0].at("format"), "int3-g32");
  EXPECT_TRUE(j.contains("seconds"));
  const double q = perplexity(out), f = perplexity(model_dir());
  EXPECT_TRUE(std::isfinite(q));
  EXPECT_NE(q, f);  // the weights changed
  const auto info = run_gpt2q("info " + shell_quote(out));
  EXPECT_HAS(info.out, "rtn (3 bit, group 32), 8 weights quantized");
}

TEST(CliQuantizeGptq, GptqBeatsRoundToNearestAndIsDeterministic) {
  const fs::path a = temp_dir("cli_gptq_a") / "q", b = temp_dir("cli_gptq_b") / "q";
  const auto ra = quantize(gptq_args(), a);
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  EXPECT_HAS(ra.err, "gptq: block 2/2: 4 matrices, Hessians from 8 segments of 64 tokens");
  const json j = json::parse(ra.out);
  EXPECT_EQ(j.at("quantization_config").at("gpt2q_method"), "gptq");
  EXPECT_EQ(j.at("quantization_config").at("quant_method"), "gptq");
  const json& layers = j.at("gptq").at("layers");
  ASSERT_EQ(layers.size(), 8u);
  double gptq = 0, rtn = 0;
  for (const auto& l : layers) {
    // Each matrix's output error on the calibration inputs is below round-to-nearest's.
    EXPECT_LT(l.at("gptq_error").get<double>(), l.at("rtn_error").get<double>()) << l.at("name");
    gptq += l.at("gptq_error").get<double>();
    rtn += l.at("rtn_error").get<double>();
  }
  EXPECT_LT(gptq, 0.9 * rtn);
  EXPECT_TRUE(std::isfinite(perplexity(a)));
  // The same inputs give the same file, byte for byte.
  ASSERT_EQ(quantize(gptq_args(), b).exit_code, 0);
  EXPECT_EQ(read_text(a / "model.safetensors"), read_text(b / "model.safetensors"));
  EXPECT_EQ(read_text(a / "config.json"), read_text(b / "config.json"));
  // Another seed draws other segments, and other codes.
  const fs::path c = temp_dir("cli_gptq_c") / "q";
  ASSERT_EQ(quantize(gptq_args("--seed 9 --act-order"), c).exit_code, 0);
  EXPECT_NE(read_text(a / "model.safetensors"), read_text(c / "model.safetensors"));
  EXPECT_EQ(json::parse(read_text(c / "config.json")).at("quantization_config").at("desc_act"), true);
}

TEST(CliQuantizeGptq, BadInputIsOneErrorLineAndNoOutput) {
  const fs::path out = temp_dir("cli_gptq_bad") / "q";
  auto expect_error = [&](const std::string& args, const std::string& message) {
    const auto r = quantize(args, out);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_EQ(r.err, "gpt2q: error: " + message + "\n") << args;
    EXPECT_FALSE(fs::exists(out)) << args;
  };
  expect_error("--method gptq",
               "--method gptq needs --calibration FILE (text whose layer inputs GPTQ fits the weights to)");
  expect_error("--method rtn --calibration " + shell_quote(shakespeare()),
               "--calibration and --tokenizer apply to --method gptq only, not rtn");
  expect_error("--method rtn --bits 5", "--bits 5 is not supported (2, 3, 4 or 8)");
  expect_error("--method gptq --bits 1 --calibration x", "--bits 1 is not supported (2, 3, 4 or 8)");
  expect_error("--method rtn --group-size 0",
               "--group-size 0 must be -1 (per channel) or a positive number of columns");
  expect_error("--method rtn --act-order", "--act-order applies to --method gptq only, not rtn");
  expect_error(gptq_args("--damp 0"), "--damp 0 must be finite and > 0");
  expect_error(gptq_args("", "129"), "--seqlen 129 exceeds the model's n_positions = 128");
  expect_error(gptq_args("--include 'wte.weight'"),
               "--method gptq quantizes the block projections only (attn.c_attn, attn.c_proj, mlp.c_fc, "
               "mlp.c_proj), not wte.weight");

  const fs::path missing = temp_dir("cli_gptq_missing") / "none.txt";
  const auto r = quantize("--method gptq --seqlen 64 --calibration " + shell_quote(missing) + tok(), out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "gpt2q: error: " + missing.string() + ":");
  EXPECT_FALSE(fs::exists(out));

  const fs::path short_text = temp_dir("cli_gptq_short") / "short.txt";
  std::ofstream(short_text) << "Too short to calibrate with.";
  expect_error("--method gptq --calibration " + shell_quote(short_text) + tok() + " --seqlen 64",
               short_text.string() +
                   ": 7 tokens, too short for calibration segments of 64 tokens (needs at least 65; lower --seqlen "
                   "or give more text)");

  // tiny-gpt2 (n_embd 2) cannot be packed in 32-bit words.
  const auto t = run_gpt2q("quantize --model " + shell_quote(fake_gpt2_dir()) + " --method rtn --out " +
                           shell_quote(out));
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_HAS(t.err, (fake_gpt2_dir() / "model.safetensors").string() +
                        ": tensor 'h.0.attn.c_attn.weight' [6, 2] (out, in): the GPTQ layout packs");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
