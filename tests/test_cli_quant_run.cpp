// Quantized checkpoints run by the commands that take a model (issue 3,
// "Execution"): generate, perplexity, eval and bench load a checkpoint
// written by quantize and run it packed. Each command's output is checked
// against the library run in-process on the same checkpoint (whose logits
// test_lib_quant_checkpoint holds to the dequantized reference), and
// perplexity against a log-softmax computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/device_memory.h"
#include "eval/classify.h"
#include "io/dataset.h"
#include "test_lib_quant_support.h"
#include "text/tokenizer.h"

using namespace gpt2q;
using namespace gpt2q::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path quantized(ModelKind kind, const std::string& method, bool double_quant, const std::string& tag) {
  const fs::path src = write_small_checkpoint(tag + "_src", gpt2_vocab_config(kind), kind, 5);
  quant::QuantizeOptions o;
  o.method = method;
  o.double_quant = double_quant;
  const fs::path out = temp_dir(tag) / "q";
  quant::save_quantized_checkpoint(quant::quantize_checkpoint(Checkpoint::load(src), o).checkpoint, out, src);
  return out;
}

const fs::path& lm_nf4() {
  static const fs::path dir = quantized(ModelKind::CausalLM, "nf4", true, "qrun_lm");
  return dir;
}

json run_json(const std::string& args) {
  auto r = run_gpt2q(args);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
  return r.exit_code == 0 ? json::parse(r.out) : json();
}

TEST(CliQuantRun, GenerateRunsTheQuantizedCheckpoint) {
  const std::string prompt = "The quick brown fox";
  const json j = run_json("generate --model " + shell_quote(lm_nf4()) + " --tokenizer " +
                          shell_quote(gpt2_tokenizer_dir()) + " --prompt '" + prompt + "' --max-new-tokens 6 --json");
  auto model = GPT2Model::load(lm_nf4());
  EXPECT_EQ(model->blocks()[0].c_fc->format(), "nf4-dq");
  GenerateOptions opts;
  opts.max_new_tokens = 6;
  const auto want = generate(*model, Tokenizer::load(gpt2_tokenizer_dir()).encode(prompt), opts);
  EXPECT_EQ(j["ids"].get<std::vector<int32_t>>(), want);
}

// Mean next-token NLL of `ids` under `model` (one window), log-softmax in double.
double mean_nll(const GPT2Model& model, const std::vector<int32_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size()), V = model.config().vocab_size;
  Tensor logits = model.lm_logits(TokenBatch{1, n, ids, {n}});
  double nll = 0;
  for (int64_t t = 0; t + 1 < n; ++t) {
    const float* row = logits.data<float>() + t * V;
    double mx = row[0], sum = 0;
    for (int64_t v = 1; v < V; ++v) mx = std::max<double>(mx, row[v]);
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    nll -= static_cast<double>(row[ids[t + 1]]) - mx - std::log(sum);
  }
  return nll / static_cast<double>(n - 1);
}

TEST(CliQuantRun, PerplexityOfTheQuantizedCheckpoint) {
  const std::string text = "Quantized weights are stored packed and run packed on the CPU.";
  const fs::path file = temp_dir("qrun_ppl") / "text.txt";
  std::ofstream(file, std::ios::binary) << text;
  const json j = run_json("perplexity --model " + shell_quote(lm_nf4()) + " --tokenizer " +
                          shell_quote(gpt2_tokenizer_dir()) + " --text " + shell_quote(file) + " --json");
  // One window (the text is shorter than n_positions): the mean NLL of each
  // next token, from the quantized model's logits, log-softmax in double.
  const auto ids = Tokenizer::load(gpt2_tokenizer_dir()).encode(text);
  const auto n = static_cast<int64_t>(ids.size());
  ASSERT_LT(n, 64);
  const double nll = mean_nll(*GPT2Model::load(lm_nf4()), ids);
  EXPECT_EQ(j["tokens"].get<int64_t>(), n - 1);
  EXPECT_NEAR(j["nll"].get<double>(), nll, 1e-5 * nll);
}

TEST(CliQuantRun, ComputeDtypeOverridesTheCheckpoints) {
  // 16+ tokens, so the prompt takes the tiled path where the compute dtype applies.
  const std::string text =
      "Quantized weights are stored packed and run packed on the CPU, and the arithmetic of a prompt can be "
      "bf16 with fp32 sums, as bitsandbytes does it.";
  const fs::path file = temp_dir("qrun_cd") / "text.txt";
  std::ofstream(file, std::ios::binary) << text;
  const auto ids = Tokenizer::load(gpt2_tokenizer_dir()).encode(text);
  ASSERT_GE(ids.size(), 16u);
  const std::string base = "perplexity --model " + shell_quote(lm_nf4()) + " --tokenizer " +
                           shell_quote(gpt2_tokenizer_dir()) + " --text " + shell_quote(file) + " --json";
  const json bf = run_json(base + " --compute-dtype bf16");
  const json f32 = run_json(base);
  Checkpoint ck = Checkpoint::load(lm_nf4());
  quant::set_compute_dtype(ck, DType::BF16);
  const double want_bf = mean_nll(*GPT2Model::from_checkpoint(ck), ids);
  const double want_f32 = mean_nll(*GPT2Model::load(lm_nf4()), ids);
  EXPECT_NEAR(bf["nll"].get<double>(), want_bf, 1e-6 * want_bf);
  EXPECT_NEAR(f32["nll"].get<double>(), want_f32, 1e-6 * want_f32);
  EXPECT_NE(bf["nll"].get<double>(), f32["nll"].get<double>()) << "the override changed nothing";

  auto r = run_gpt2q(base + " --compute-dtype fp16");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --compute-dtype fp16 needs --device cuda (the CPU has fp32 and bf16)\n");
  r = run_gpt2q(base + " --compute-dtype fp8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --compute-dtype must be fp32, fp16 or bf16, got 'fp8'\n");
  const fs::path plain = write_small_checkpoint("qrun_cd_plain", gpt2_vocab_config(ModelKind::CausalLM),
                                                ModelKind::CausalLM, 5);
  // A dense checkpoint takes it too (its weights rounded to bf16 at load;
  // test_cli_perplexity / test_cli_eval check the numbers).
  r = run_gpt2q("perplexity --model " + shell_quote(plain) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                " --text " + shell_quote(file) + " --compute-dtype bf16");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliQuantRun, EvalRunsAQuantizedClassifier) {
  const fs::path clf = quantized(ModelKind::SequenceClassification, "llm-int8", false, "qrun_clf");
  const fs::path csv = temp_dir("qrun_eval") / "small.csv";
  {
    std::ofstream out(csv, std::ios::binary);
    for (int i = 0; i < 11; ++i)
      out << "\"" << 1 + (i * 3) % 4 << "\",\"Title " << i << "\",\"Some description of story " << i << ".\"\n";
  }
  const json j = run_json("eval --model " + shell_quote(clf) + " --data " + shell_quote(csv) + " --tokenizer " +
                          shell_quote(gpt2_tokenizer_dir()) + " --batch-size 4 --max-length 16 --json");
  auto model = GPT2Model::load(clf);
  EXPECT_EQ(model->blocks()[1].attn_c_proj->format(), "llm-int8");
  ClassifyOptions opts;
  opts.batch_size = 4;
  opts.max_length = 16;
  opts.progress = false;
  const auto lib =
      evaluate_classifier(*model, Tokenizer::load(gpt2_tokenizer_dir()), load_dataset(csv, DataFormat::AgNews), opts);
  int64_t correct = 0;
  const auto data = load_dataset(csv, DataFormat::AgNews);
  for (size_t i = 0; i < data.rows.size(); ++i) correct += data.rows[i].label == lib.run.predictions[i];
  EXPECT_EQ(j["n"], 11);
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), static_cast<double>(correct) / 11.0);
}

TEST(CliQuantRun, BenchTimesAStoredQuantizedCheckpoint) {
  const json j = run_json("bench --model " + shell_quote(lm_nf4()) +
                          " --seq 8 --iters 1 --decode-tokens 3 --throughput-batch 2 --throughput-iters 1 --json");
  ASSERT_EQ(j["methods"].size(), 1u);
  const json& m = j["methods"][0];
  EXPECT_EQ(m["method"], "stored");
  EXPECT_NE(m["description"].get<std::string>().find("nf4"), std::string::npos) << m["description"];
  EXPECT_EQ(m["weight_bytes"].get<size_t>(), GPT2Model::load(lm_nf4())->total_weight_bytes());
  EXPECT_EQ(m["decode"]["timed_steps"], 2);  // the first token comes with the prompt
  EXPECT_EQ(m["throughput"]["runs"], 1);
  EXPECT_GT(m["latency"]["min_ms"].get<double>(), 0.0);
}

TEST(CliQuantRun, BenchQuantizesEachMethodInMemory) {
  const json j = run_json("bench --method all --geometry 64x2x2 --double-quant --seq 8 --iters 1 --decode-tokens 2 "
                          "--throughput-batch 0 --json");
  const std::vector<std::string> methods = {"fp32", "fp16", "int8-tensor", "int8-tensor:bf16-compute",
                                            "llm-int8", "nf4", "nf4:bf16-compute", "fp4"};
  ASSERT_EQ(j["methods"].size(), methods.size());
  const Checkpoint source = make_synthetic_checkpoint(geometry_config("64x2x2", "test"), ModelKind::CausalLM, 0);
  for (size_t i = 0; i < methods.size(); ++i) {
    SCOPED_TRACE(methods[i]);
    const json& m = j["methods"][i];
    EXPECT_EQ(m["method"], methods[i]);
    size_t want = GPT2Model::from_checkpoint(source)->total_weight_bytes();
    const bool bf16 = methods[i].find(":bf16-compute") != std::string::npos;
    if (methods[i] != "fp32") {
      quant::QuantizeOptions o;
      o.method = methods[i].substr(0, methods[i].find(':'));
      o.double_quant = o.method == "nf4" || o.method == "fp4";  // --double-quant goes to the 4-bit methods only
      want = GPT2Model::from_checkpoint(quant::quantize_checkpoint(source, o).checkpoint)->total_weight_bytes();
    }
    EXPECT_EQ(m["weight_bytes"].get<size_t>(), want);  // the compute dtype holds nothing more
    EXPECT_EQ(m["description"].get<std::string>().find("bf16 compute") != std::string::npos, bf16) << m["description"];
    EXPECT_FALSE(m.contains("throughput"));
  }
}

TEST(CliQuantRun, BenchArgumentErrorsAreOneLine) {
  auto r = run_gpt2q("bench --method int9");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "gpt2q: error: bench: --method 'int9' is not one of fp32, fp16, int8-tensor, llm-int8, nf4, fp4 "
            "(int8-tensor, nf4, fp4 also with :bf16-compute), all\n");
  r = run_gpt2q("bench --method llm-int8:bf16-compute");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is not one of"), std::string::npos) << r.err;
  r = run_gpt2q("bench --method llm-int8 --compute-dtype bf16");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --compute-dtype bf16 applies to --method int8-tensor, nf4 and fp4 only, not llm-int8\n");
  r = run_gpt2q("bench --method int8-tensor --double-quant");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --double-quant applies to --method nf4 and fp4 only, not int8-tensor\n");
  r = run_gpt2q("bench --model " + shell_quote(lm_nf4()) + " --method nf4 --seq 8 --iters 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already quantized"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

// `bench --device cuda` (bench_gpu.cpp) without a usable GPU: one error line
// from resolve_placement before any work (no model built, no data read), and
// nothing on stdout. On a machine with a GPU this test skips.
TEST(CliQuantRun, BenchOnCudaWithoutAGpuIsOneErrorLine) {
  std::string why;
  if (cuda_device_usable(&why)) GTEST_SKIP() << "a CUDA device is present: the GPU benchmark would run";
  for (const std::string device : {"cuda", "cuda:0"}) {
    SCOPED_TRACE(device);
    const auto r = run_gpt2q("bench --device " + device + " --method all --data no-such.csv --text no-such.raw --json");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("gpt2q: error: --device " + device + ": ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(cuda_built() ? "no usable CUDA device" : "built without the CUDA backend"), std::string::npos)
        << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// Options of the CPU run and of the GPU run are refused on the other path
// (before the device is looked at), so that nothing is ignored silently.
TEST(CliQuantRun, BenchOptionsOfOneDeviceAreRefusedOnTheOther) {
  auto r = run_gpt2q("bench --device cuda --seq 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: bench --device cuda: --seq applies to the CPU run only\n");
  r = run_gpt2q("bench --device cuda --method nf4 --compute-dtype bf16");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: bench --device cuda: --compute-dtype applies to the CPU run only\n");
  r = run_gpt2q("bench --data test.csv");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: bench: --data applies to --device cuda only\n");
  r = run_gpt2q("bench --device cpu --method all --skip ppl");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: bench: --skip applies to --device cuda only\n");
  r = run_gpt2q("bench --device gpu");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: --device must be cpu, cuda or cuda:N, got 'gpu'\n");
  EXPECT_EQ(r.out, "");
}

}  // namespace
