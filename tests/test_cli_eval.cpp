// `gpt2q eval` end to end: a tiny classifier checkpoint written here (real
// GPT-2 vocabulary, n_embd 8), the real tokenizer through --tokenizer, AG
// News-format data. Output checked against the library run in-process and
// against a recount from the predictions file; bad inputs give one error line,
// a non-zero exit and no predictions file.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "eval/classify.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "model/gpt2.h"
#include "model/synthetic_weights.h"
#include "core/file_util.h"
#include "support/test_env.h"
#include "text/tokenizer.h"

namespace gpt2q {
namespace {

using namespace gpt2q::test;

namespace fs = std::filesystem;

GPT2Config tiny_config(std::vector<std::string> labels) {
  GPT2Config c;
  c.vocab_size = 50257;
  c.n_positions = 256;
  c.n_embd = 8;
  c.n_head = 2;
  c.n_layer = 1;
  c.id2label = std::move(labels);
  return c;
}

fs::path save_model(const fs::path& dir, const GPT2Config& cfg, ModelKind kind, uint64_t seed) {
  Checkpoint ck = make_synthetic_checkpoint(cfg, kind, seed);
  std::vector<std::pair<std::string, Tensor>> tensors(ck.tensors.begin(), ck.tensors.end());
  save_checkpoint(dir, cfg, kind, tensors);
  return dir;
}

class CliEval : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(test::temp_dir("cli_eval"));
    auto cfg = tiny_config({"World", "Sports", "Business", "Sci/Tech"});
    cfg.pad_token_id = 50256;
    save_model(*root_ / "clf", cfg, ModelKind::SequenceClassification, 42);
    save_model(*root_ / "clf2", tiny_config({"neg", "pos"}), ModelKind::SequenceClassification, 7);
    save_model(*root_ / "lm", tiny_config({}), ModelKind::CausalLM, 3);
    auto short_cfg = tiny_config({"x", "y", "z", "w"});
    short_cfg.n_positions = 64;
    save_model(*root_ / "clf64", short_cfg, ModelKind::SequenceClassification, 9);
    // AG News layout: quoted label 1-4, title, description; commas, "" escapes
    // and an embedded newline included.
    std::string csv;
    const char* titles[] = {"Stocks rally", "Team wins, again", "New \"\"chip\"\" ships", "Summit ends"};
    for (int i = 0; i < 37; ++i)
      csv += "\"" + std::to_string(1 + (i * 7) % 4) + "\",\"" + titles[i % 4] + " " + std::to_string(i) +
             "\",\"Body text number " + std::to_string(i) + (i % 9 == 0 ? ",\nsecond line" : " of the story") + ".\"\n";
    write_file_atomic(*root_ / "small.csv", csv);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static std::string base(const fs::path& model, const fs::path& data) {
    return "eval --model " + shell_quote(model) + " --data " + shell_quote(data) + " --tokenizer " +
           shell_quote(gpt2_tokenizer_dir());
  }
  static fs::path* root_;
};
fs::path* CliEval::root_ = nullptr;

TEST_F(CliEval, JsonAndPredictionsMatchTheLibraryAndARecount) {
  fs::path out_dir = test::temp_dir("cli_eval_pred");
  fs::path pred = out_dir / "pred.csv";
  auto r = test::run_gpt2q(base(*root_ / "clf", *root_ / "small.csv") + " --batch-size 5 --max-length 16 --json " +
                           "--predictions " + shell_quote(pred));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class", "confusion_matrix",
                          "latency_ms_per_sample", "samples_per_s", "n"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["n"], 37);
  ASSERT_EQ(j["per_class"].size(), 4u);
  for (const char* key : {"label", "precision", "recall", "f1", "support"})
    EXPECT_TRUE(j["per_class"][0].contains(key)) << key;
  EXPECT_EQ(j["per_class"][3]["label"], "Sci/Tech");
  EXPECT_GT(j["latency_ms_per_sample"].get<double>(), 0.0);
  EXPECT_GT(j["samples_per_s"].get<double>(), 0.0);

  // The library, in-process, on the same inputs.
  auto model = GPT2Model::load(*root_ / "clf");
  auto tok = Tokenizer::load(gpt2_tokenizer_dir());
  auto data = load_dataset(*root_ / "small.csv", DataFormat::AgNews);
  ClassifyOptions opts;
  opts.batch_size = 5;
  opts.max_length = 16;
  opts.progress = false;
  auto lib = evaluate_classifier(*model, tok, data, opts);

  // Predictions file: header, one row per input row, file order.
  std::istringstream lines(read_text(pred));
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "index,label,pred");
  std::vector<std::vector<int64_t>> confusion(4, std::vector<int64_t>(4, 0));
  int64_t rows = 0, correct = 0;
  while (std::getline(lines, line)) {
    int64_t idx = -1, label = -1, p = -1;
    char c1 = 0, c2 = 0;
    std::istringstream fields(line);
    fields >> idx >> c1 >> label >> c2 >> p;
    ASSERT_TRUE(fields && c1 == ',' && c2 == ',') << line;
    EXPECT_EQ(idx, rows);
    EXPECT_EQ(label, data.rows[rows].label);
    EXPECT_EQ(p, lib.run.predictions[rows]);
    ++confusion[label][p];
    correct += label == p;
    ++rows;
  }
  EXPECT_EQ(rows, 37);
  EXPECT_EQ(j["confusion_matrix"], nlohmann::json(confusion));
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), double(correct) / 37);
  EXPECT_DOUBLE_EQ(j["macro_f1"].get<double>(), lib.metrics.macro_f1);
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(j["per_class"][c]["support"], lib.metrics.per_class[c].support);
    EXPECT_DOUBLE_EQ(j["per_class"][c]["precision"].get<double>(), lib.metrics.per_class[c].precision);
  }
  fs::remove_all(out_dir);
}

// --compute-dtype bf16 on an fp32 checkpoint: the block projections'
// weights rounded to bf16 once, prompts (5 × 16 = 80 rows per product, above
// the 16-row threshold) multiplied with bf16 activations and fp32 sums
// (backend/cpu/bf16_linear.h). The CLI gives what the library gives with a
// CPU bf16 placement, and logits stay within bf16 rounding of fp32's.
TEST_F(CliEval, ComputeDtypeBf16OnADenseCheckpoint) {
  const fs::path out_dir = test::temp_dir("cli_eval_bf16");
  const std::string cmd = base(*root_ / "clf", *root_ / "small.csv") + " --batch-size 5 --max-length 16 --json ";
  auto r = test::run_gpt2q(cmd + "--compute-dtype bf16 --predictions " + shell_quote(out_dir / "bf16.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["device"]["compute_dtype"], "cpu (bf16)");

  auto tok = Tokenizer::load(gpt2_tokenizer_dir());
  auto data = load_dataset(*root_ / "small.csv", DataFormat::AgNews);
  ClassifyOptions opts;
  opts.batch_size = 5;
  opts.max_length = 16;
  opts.progress = false;
  const auto bf16 = evaluate_classifier(*GPT2Model::load(*root_ / "clf", Placement{Device::CPU, DType::BF16}), tok,
                                        data, opts);
  const auto fp32 = evaluate_classifier(*GPT2Model::load(*root_ / "clf"), tok, data, opts);
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), bf16.metrics.accuracy);
  EXPECT_DOUBLE_EQ(j["macro_f1"].get<double>(), bf16.metrics.macro_f1);
  std::istringstream lines(read_text(out_dir / "bf16.csv"));
  std::string line;
  std::getline(lines, line);
  for (size_t i = 0; std::getline(lines, line); ++i)
    EXPECT_EQ(std::stoi(line.substr(line.rfind(',') + 1)), bf16.run.predictions.at(i)) << i;
  // bf16 keeps 8 significant bits: each rounded operand is off by at most
  // 2^-9 relative, so a logit moves by about that much of its magnitude per
  // rounded product on its path (here: four projections, then fp32 layers).
  // 2^-5 of the largest logit (+ 1e-4 for logits near 0) is a loose bound
  // of that; an unrounded (fp32) run would pass it too, so the difference
  // itself is checked to be non-zero.
  ASSERT_EQ(bf16.run.logits.size(), fp32.run.logits.size());
  float largest = 0, diff = 0;
  for (size_t i = 0; i < fp32.run.logits.size(); ++i) {
    largest = std::max(largest, std::fabs(fp32.run.logits[i]));
    diff = std::max(diff, std::fabs(bf16.run.logits[i] - fp32.run.logits[i]));
  }
  EXPECT_LE(diff, std::ldexp(largest, -5) + 1e-4f);
  EXPECT_GT(diff, 0.0f) << "bf16 compute changed nothing";
  fs::remove_all(out_dir);
}

TEST_F(CliEval, HumanOutputShowsMetricsAndClassNames) {
  auto r = test::run_gpt2q(base(*root_ / "clf", *root_ / "small.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* s : {"accuracy:", "macro:", "confusion matrix", "Sci/Tech", "Business", "latency:", "samples/s"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST_F(CliEval, JsonlAndGenericCsvFormats) {
  write_file_atomic(*root_ / "d.jsonl",
                    "{\"text\": \"good movie\", \"label\": 1}\n{\"text\": \"bad film\", \"label\": 0}\n");
  write_file_atomic(*root_ / "d.csv", "text,label\ngood movie,1\nbad film,0\n");
  std::vector<nlohmann::json> outs;
  for (const char* f : {"d.jsonl", "d.csv"}) {
    auto r = test::run_gpt2q(base(*root_ / "clf2", *root_ / f) + " --json");
    ASSERT_EQ(r.exit_code, 0) << f << ": " << r.err;
    outs.push_back(nlohmann::json::parse(r.out));
    EXPECT_EQ(outs.back()["n"], 2);
  }
  EXPECT_EQ(outs[0]["confusion_matrix"], outs[1]["confusion_matrix"]);
}

TEST_F(CliEval, DefaultMaxLengthIsCappedByNPositions) {
  auto r = test::run_gpt2q(base(*root_ / "clf", *root_ / "small.csv") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["max_length"], 128);
  EXPECT_EQ(nlohmann::json::parse(r.out)["batch_size"], 8);
  r = test::run_gpt2q(base(*root_ / "clf64", *root_ / "small.csv") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["max_length"], 64);
  r = test::run_gpt2q(base(*root_ / "clf64", *root_ / "small.csv") + " --max-length 65");
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(CliEval, RealAgNewsTestSplit) {
  fs::path data = test::data_dir() / "ag_news" / "test.csv";
  auto r = test::run_gpt2q(base(*root_ / "clf", data) + " --batch-size 32 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n"], 7600);
  int64_t total = 0;
  for (const auto& row : j["confusion_matrix"])
    for (const auto& v : row) total += v.get<int64_t>();
  EXPECT_EQ(total, 7600);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(j["per_class"][c]["support"], 1900);
}

struct BadCase {
  std::string name, args, expect;  // expect: a substring of the error line
};

TEST_F(CliEval, BadInputsFailWithOneLineAndNoPredictions) {
  const fs::path& d = *root_;
  write_file_atomic(d / "malformed.csv", "\"1\",\"ok\",\"fine\"\n\"2\",\"unterminated,\"x\n");
  write_file_atomic(d / "badlabel.csv", "\"1\",\"a\",\"b\"\n\"5\",\"c\",\"d\"\n");
  write_file_atomic(d / "badutf8.csv", "\"1\",\"a\",\"b\"\n\"2\",\"c\xff\xfe\",\"d\"\n");
  write_file_atomic(d / "empty.csv", "");
  write_file_atomic(d / "twoclass.jsonl", "{\"text\": \"x\", \"label\": 0}\n{\"text\": \"y\", \"label\": 2}\n");
  // 200,000 levels deep: once a stack overflow when the label was copied.
  write_file_atomic(d / "deep.jsonl", "{\"text\": \"x\", \"label\": " + std::string(200000, '[') +
                                          std::string(200000, ']') + "}\n");
  auto with = [&](const fs::path& data) { return base(d / "clf", data); };
  std::vector<BadCase> cases = {
      {"malformed", with(d / "malformed.csv"), "malformed.csv"},
      {"bad label", with(d / "badlabel.csv"), "badlabel.csv"},
      {"invalid utf8", with(d / "badutf8.csv"), "badutf8.csv"},
      {"empty", with(d / "empty.csv"), "empty.csv"},
      {"missing data", with(d / "nope.csv"), "nope.csv"},
      {"missing model", base(d / "no_model", d / "small.csv"), "no_model"},
      {"max length 0", with(d / "small.csv") + " --max-length 0", "--max-length"},
      {"max length too big", with(d / "small.csv") + " --max-length 257", "--max-length"},
      {"batch size 0", with(d / "small.csv") + " --batch-size 0", "--batch-size"},
      {"bad format", with(d / "small.csv") + " --format xml", "xml"},
      {"lm model", base(d / "lm", d / "small.csv"), "is a GPT2LMHeadModel; eval needs GPT2ForSequenceClassification"},
      {"label outside model", base(d / "clf2", d / "twoclass.jsonl"), "twoclass.jsonl"},
      {"deeply nested label", with(d / "deep.jsonl"), "deep.jsonl:1: JSON nested deeper than 64 levels"},
      {"no tokenizer", "eval --model " + shell_quote(d / "clf") + " --data " + shell_quote(d / "small.csv"),
       "has no tokenizer files (vocab.json+merges.txt, encoder.json+vocab.bpe or tokenizer.json); pass --tokenizer DIR"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    fs::path out_dir = test::temp_dir("cli_eval_bad");
    auto r = test::run_gpt2q(c.args + " --predictions " + shell_quote(out_dir / "p.csv"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_EQ(r.err.rfind("gpt2q: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_TRUE(fs::is_empty(out_dir)) << "left a file behind";
    fs::remove_all(out_dir);
  }
}

}  // namespace
}  // namespace gpt2q
