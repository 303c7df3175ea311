// `gpt2q quantize` as a user runs it: argument errors, selection by glob,
// the JSON report, and the directory it writes.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "io/checkpoint.h"
#include "test_lib_quant_support.h"

using namespace gpt2q;
using namespace gpt2q::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path& source_dir() {
  static const fs::path dir = write_small_checkpoint("cliq_src", small_quant_config());
  return dir;
}

CommandResult quantize(const std::string& args, fs::path* out_dir = nullptr) {
  const fs::path out = temp_dir("cliq_out") / "q";
  if (out_dir) *out_dir = out;
  return run_gpt2q("quantize --model " + shell_quote(source_dir()) + " --out " + shell_quote(out) + " " + args);
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST(CliQuantize, UnknownMethodIsOneErrorLine) {
  fs::path out;
  auto r = quantize("--method int4", &out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --method 'int4' is not one of int8-tensor, llm-int8, nf4, fp4, rtn, gptq, fp16, bf16, fp32\n");
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliQuantize, BadBlockSize) {
  for (const char* bs : {"48", "16", "8192"}) {
    auto r = quantize(std::string("--method nf4 --block-size ") + bs);
    EXPECT_EQ(r.exit_code, 1) << bs;
    EXPECT_EQ(r.err, fmt::format("gpt2q: error: --block-size {} is not a power of two from 32 to 4096 "
                                 "(bitsandbytes' block sizes)\n",
                                 bs));
  }
}

TEST(CliQuantize, OptionsOfAnotherMethod) {
  EXPECT_HAS(quantize("--method int8-tensor --double-quant").err,
             "--double-quant applies to --method nf4 and fp4 only, not int8-tensor");
  EXPECT_HAS(quantize("--method nf4 --per-channel").err,
             "--per-channel applies to --method int8-tensor only");
  EXPECT_HAS(quantize("--method llm-int8 --threshold -1").err, "--threshold -1 must be finite and >= 0");
  EXPECT_HAS(quantize("--method nf4 --keep-dtype bf16").err, "--keep-dtype 'bf16' is not fp16 or fp32");
  EXPECT_HAS(quantize("--method nf4 --compute-dtype fp16").err, "--compute-dtype must be fp32 or bf16, got 'fp16'");
  EXPECT_HAS(quantize("--method llm-int8 --compute-dtype bf16").err,
             "--compute-dtype bf16 applies to --method int8-tensor, nf4 and fp4 only, not llm-int8");
}

TEST(CliQuantize, ComputeDtypeIsWrittenAsTorchNamesIt) {
  for (const auto& [method, key] : {std::pair<std::string, std::string>{"nf4", "bnb_4bit_compute_dtype"},
                                    {"int8-tensor", "compute_dtype"}}) {
    fs::path out;
    const auto r = quantize("--method " + method + " --compute-dtype bf16", &out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Checkpoint ck = Checkpoint::load(out);
    EXPECT_EQ(ck.quantization_config.at(key), "bfloat16") << method;
    EXPECT_HAS(r.out, "bf16 compute");
    fs::path out32;
    ASSERT_EQ(quantize("--method " + method, &out32).exit_code, 0);
    EXPECT_EQ(Checkpoint::load(out32).quantization_config.at(key), "float32") << method;
  }
}

TEST(CliQuantize, MissingArgumentsAreParseErrors) {
  auto r =
      run_gpt2q("quantize --model " + shell_quote(source_dir()) + " --out " + shell_quote(temp_dir("cliq_x") / "q"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_HAS(r.err, "--method is required");
}

TEST(CliQuantize, MissingModelDirectoryNamesIt) {
  auto r = run_gpt2q("quantize --model /nonexistent/gpt2 --method nf4 --out " + shell_quote(temp_dir("cliq_x") / "q"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: /nonexistent/gpt2: no such directory\n");
}

TEST(CliQuantize, IncludeAndExcludeSelectTensors) {
  fs::path out;
  auto r = quantize("--method nf4 --include 'h.*.mlp.*' --exclude 'h.1.*' --json", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  std::vector<std::string> names;
  for (const auto& t : j["tensors"]) names.push_back(t["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"h.0.mlp.c_fc.weight", "h.0.mlp.c_proj.weight"}));
  const Checkpoint ck = Checkpoint::load(out);
  EXPECT_EQ(ck.quantized_weights, (std::set<std::string>{"h.0.mlp.c_fc.weight", "h.0.mlp.c_proj.weight"}));
  EXPECT_EQ(ck.get("h.1.mlp.c_fc.weight").dtype(), DType::F16);
  EXPECT_HAS(quantize("--method nf4 --include 'h.*.mpl.*'").err, "--include 'h.*.mpl.*' matches no 2-D weight");
}

TEST(CliQuantize, JsonReportAgreesWithTheWrittenCheckpoint) {
  fs::path out;
  auto r = quantize("--method nf4 --double-quant --block-size 128 --json", &out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  const Checkpoint ck = Checkpoint::load(out);
  EXPECT_EQ(j["quantization_config"], ck.quantization_config);
  EXPECT_EQ(ck.quantization_config["bnb_4bit_quant_type"], "nf4");
  EXPECT_EQ(ck.quantization_config["bnb_4bit_use_double_quant"], true);
  EXPECT_EQ(ck.quantization_config["load_in_4bit"], true);
  EXPECT_EQ(ck.quantization_config["quant_method"], "bitsandbytes");
  ASSERT_EQ(j["tensors"].size(), 8u);
  size_t stored = 0;
  for (const auto& t : j["tensors"]) {
    EXPECT_EQ(t["format"], "nf4-dq");
    EXPECT_GT(t["sqnr_db"].get<double>(), 10.0);
    EXPECT_GT(t["mse"].get<double>(), 0.0);
    EXPECT_GE(t["max_abs_error"].get<double>(), std::sqrt(t["mse"].get<double>()));
    stored += t["stored_bytes"].get<size_t>();
  }
  for (const auto& t : j["kept"]) stored += t["stored_bytes"].get<size_t>();
  EXPECT_EQ(j["stored_bytes"].get<size_t>(), stored);
  EXPECT_EQ(stored, ck.stored_bytes());
  EXPECT_EQ(j["selected_stored_bytes"].get<size_t>() + j["kept_stored_bytes"].get<size_t>(), stored);
  // The block size is recorded per tensor, in bnb's quant_state.
  const Tensor& qs = ck.get("h.0.mlp.c_fc.weight.quant_state.bitsandbytes__nf4");
  const json state = json::parse(std::string(static_cast<const char*>(qs.raw()), qs.nbytes()));
  EXPECT_EQ(state["blocksize"], 128);
  EXPECT_EQ(state["shape"], json({512, 128}));
  EXPECT_EQ(state["dtype"], "float32");
}

TEST(CliQuantize, TextReportListsEveryQuantizedTensor) {
  auto r = quantize("--method int8-tensor --per-channel --symmetric");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_HAS(r.out, "int8-tensor (symmetric, per channel)");
  for (const char* name : {"h.0.attn.c_attn.weight", "h.1.mlp.c_proj.weight"}) EXPECT_HAS(r.out, name);
  EXPECT_HAS(r.out, "int8-channel-sym");
  EXPECT_HAS(r.out, "SQNR dB");
}

TEST(CliQuantize, RefusesAnExistingOutputAndLeavesItAlone) {
  fs::path out;
  ASSERT_EQ(quantize("--method fp4", &out).exit_code, 0);
  const std::string before = read_file(out / "config.json");
  auto r = run_gpt2q("quantize --model " + shell_quote(source_dir()) + " --method nf4 --out " + shell_quote(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: " + out.string() + ": already exists (choose a new --out directory)\n");
  EXPECT_EQ(read_file(out / "config.json"), before);
}

TEST(CliQuantize, CopiesTokenizerFiles) {
  const fs::path src = temp_dir("cliq_tok") / "model";
  fs::copy(source_dir(), src);
  write_file_atomic(src / "vocab.json", "{}");
  write_file_atomic(src / "merges.txt", "#version: 0.2\n");
  const fs::path out = temp_dir("cliq_tok_out") / "q";
  auto r = run_gpt2q("quantize --model " + shell_quote(src) + " --method llm-int8 --out " + shell_quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(out / "vocab.json"), "{}");
  EXPECT_EQ(read_file(out / "merges.txt"), "#version: 0.2\n");
}

TEST(CliInfo, ShowsQuantizationAndBytesPerComponent) {
  fs::path out;
  ASSERT_EQ(quantize("--method llm-int8 --include 'h.*.mlp.*'", &out).exit_code, 0);
  auto r = run_gpt2q("info " + shell_quote(out) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  const json src = json::parse(run_gpt2q("info " + shell_quote(source_dir()) + " --json").out);
  // Quantized weights count their logical parameters; their state counts none.
  EXPECT_EQ(j["parameters"], src["parameters"]);
  for (const char* k : {"wte", "wpe", "attn", "mlp", "ln", "ln_f"})
    EXPECT_EQ(j["components"][k]["parameters"], src["components"][k]["parameters"]) << k;
  EXPECT_EQ(j["quantization_config"]["load_in_8bit"], true);
  EXPECT_EQ(j["quantized_weights"].size(), 4u);
  // In memory: what the loaded model reports, component by component.
  auto model = GPT2Model::load(out);
  EXPECT_EQ(j["held_bytes"].get<size_t>(), model->total_weight_bytes());
  size_t mlp = 0, stored = 0;
  for (const auto& bw : model->blocks()) mlp += bw.c_fc->bytes() + bw.mlp_c_proj->bytes();
  EXPECT_EQ(j["components"]["mlp"]["held_bytes"].get<size_t>(), mlp);
  for (const auto& [k, v] : j["components"].items()) stored += v["bytes"].get<size_t>();
  EXPECT_EQ(j["bytes"].get<size_t>(), stored);
  EXPECT_EQ(stored, Checkpoint::load(out).stored_bytes());

  auto text = run_gpt2q("info " + shell_quote(out));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_HAS(text.out, "quantization  llm-int8 (threshold 6), 4 weights quantized");
  EXPECT_HAS(text.out, "in memory");
}

TEST(CliInfo, RejectsACorruptQuantizedCheckpointInOneLine) {
  fs::path out;
  ASSERT_EQ(quantize("--method nf4", &out).exit_code, 0);
  json cfg = json::parse(read_file(out / "config.json"));
  cfg["quantization_config"]["bnb_4bit_quant_type"] = "nf5";
  write_file_atomic(out / "config.json", cfg.dump());
  auto r = run_gpt2q("info " + shell_quote(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: " + (out / "config.json").string() +
                       ": quantization_config.bnb_4bit_quant_type \"nf5\" is not supported (nf4, fp4)\n");
}

// NaN/Inf weights are refused by every method, naming the tensor, even when
// the tensor is only cast or kept; `info` warns about them.
TEST(CliQuantize, RefusesNonFiniteWeightsInEveryMethod) {
  const GPT2Config c = small_quant_config();
  for (const char* tensor : {"h.1.mlp.c_fc.weight", "ln_f.bias"}) {
    Checkpoint ck = make_synthetic_checkpoint(c, ModelKind::CausalLM, 7);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& s : expected_tensors(c, ModelKind::CausalLM)) tensors.emplace_back(s.name, ck.tensors.at(s.name));
    for (auto& [name, t] : tensors)
      if (name == tensor) t.data<float>()[3] = std::numeric_limits<float>::infinity();
    const auto dir = temp_dir("cliq_inf") / "model";
    save_checkpoint(dir, c, ModelKind::CausalLM, tensors);

    const auto info = run_gpt2q("info " + shell_quote(dir));
    EXPECT_EQ(info.exit_code, 0) << info.err;
    EXPECT_HAS(info.err, std::string("warning: ") + (dir / "model.safetensors").string() + ": tensor '" + tensor +
                             "' holds 1 non-finite value");

    for (const char* method : {"int8-tensor", "llm-int8", "nf4", "fp4", "fp16", "bf16", "fp32"}) {
      const fs::path out = temp_dir("cliq_inf_out") / "q";
      const auto r = run_gpt2q("quantize --method " + std::string(method) + " --model " + shell_quote(dir) +
                               " --out " + shell_quote(out));
      EXPECT_EQ(r.exit_code, 1) << method;
      EXPECT_HAS(r.err, std::string("tensor '") + tensor + "': non-finite value inf at index 3");
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_FALSE(fs::exists(out)) << method;
    }
  }
}

// A killed quantize leaves OUT.tmp-PID-XXXXXX; the next quantize of the same
// output removes it when that process is gone, and keeps a live one's.
TEST(CliQuantize, RemovesStaleTempDirsOfTheSameOutput) {
  const fs::path parent = temp_dir("cliq_stale");
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ::waitpid(dead, nullptr, 0);
  const fs::path stale = parent / ("q.tmp-" + std::to_string(dead) + "-abcDEF");
  const fs::path live = parent / ("q.tmp-" + std::to_string(::getpid()) + "-ghiJKL");
  const fs::path other = parent / ("other.tmp-" + std::to_string(dead) + "-abcDEF");
  for (const auto& d : {stale, live, other}) {
    fs::create_directories(d);
    write_file_atomic(d / "model.safetensors", "partial");
  }
  const auto r = run_gpt2q("quantize --method nf4 --model " + shell_quote(source_dir()) + " --out " +
                           shell_quote(parent / "q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(parent / "q" / "model.safetensors"));
}

}  // namespace
