// `gpt2q kld` against an independent computation: the test runs both models
// itself (GPT2Model::lm_logits / class_logits on windows and texts it builds
// on its own), computes KL, top-1 agreement, perplexity and percentiles in
// long double, and compares with the command's JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "test_lib_quant_support.h"
#include "text/tokenizer.h"

using namespace gpt2q;
using namespace gpt2q::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A reference checkpoint and a quantized candidate of it.
std::pair<fs::path, fs::path> model_pair(ModelKind kind, const std::string& method) {
  const fs::path ref = write_small_checkpoint("kld_ref", gpt2_vocab_config(kind), kind, 11);
  quant::QuantizeOptions o;
  o.method = method;
  const fs::path cand = temp_dir("kld_cand") / "q";
  quant::save_quantized_checkpoint(quant::quantize_checkpoint(Checkpoint::load(ref), o).checkpoint, cand, ref);
  return {ref, cand};
}

using Real = long double;

std::vector<Real> log_softmax(const float* row, int64_t n) {
  Real mx = row[0];
  for (int64_t v = 1; v < n; ++v) mx = std::max<Real>(mx, row[v]);
  Real sum = 0;
  for (int64_t v = 0; v < n; ++v) sum += std::exp(static_cast<Real>(row[v]) - mx);
  std::vector<Real> out(static_cast<size_t>(n));
  for (int64_t v = 0; v < n; ++v) out[v] = static_cast<Real>(row[v]) - mx - std::log(sum);
  return out;
}

Real kl(const float* p_logits, const float* q_logits, int64_t n) {
  const auto lp = log_softmax(p_logits, n), lq = log_softmax(q_logits, n);
  Real s = 0;
  for (int64_t v = 0; v < n; ++v) s += std::exp(lp[v]) * (lp[v] - lq[v]);
  return s;
}

int64_t first_argmax(const float* row, int64_t n) {
  int64_t best = 0;
  for (int64_t v = 1; v < n; ++v)
    if (row[v] > row[best]) best = v;
  return best;
}

// numpy.percentile's default (linear between order statistics).
double np_percentile(std::vector<Real> v, double pct) {
  std::sort(v.begin(), v.end());
  const Real pos = pct / 100.0L * static_cast<Real>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return static_cast<double>(v[lo] + (v[hi] - v[lo]) * (pos - static_cast<Real>(lo)));
}

void expect_close(const json& j, const char* key, double want) {
  const double got = j.at(key).get<double>();
  EXPECT_NEAR(got, want, 1e-9 + 1e-6 * std::abs(want)) << key;
}

void expect_stats(const json& j, const std::vector<Real>& kls, int64_t same_top1) {
  ASSERT_EQ(j["count"].get<size_t>(), kls.size());
  Real sum = 0;
  for (Real x : kls) sum += x;
  expect_close(j, "kld_mean", static_cast<double>(sum / kls.size()));
  expect_close(j, "kld_median", np_percentile(kls, 50));
  expect_close(j, "kld_p90", np_percentile(kls, 90));
  expect_close(j, "kld_p99", np_percentile(kls, 99));
  expect_close(j, "kld_max", static_cast<double>(*std::max_element(kls.begin(), kls.end())));
  expect_close(j, "top1_agreement", static_cast<double>(same_top1) / kls.size());
}

TEST(CliKld, TextModeMatchesAnIndependentComputation) {
  const auto [ref_dir, cand_dir] = model_pair(ModelKind::CausalLM, "nf4");
  const std::string text =
      "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, and the tallest "
      "structure in Paris. Its base is square, measuring 125 metres (410 ft) on each side. During its construction, "
      "the Eiffel Tower surpassed the Washington Monument to become the tallest man-made structure in the world, a "
      "title it held for 41 years until the Chrysler Building in New York City was finished in 1930.";
  const fs::path text_file = temp_dir("kld_text") / "t.txt";
  write_file_atomic(text_file, text);
  const int64_t L = 40, stride = 16;
  auto r = run_gpt2q("kld --reference " + shell_quote(ref_dir) + " --candidate " + shell_quote(cand_dir) + " --text " +
                     shell_quote(text_file) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                     " --max-length 40 --stride 16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);

  const auto ids = Tokenizer::load(gpt2_tokenizer_dir()).encode(text);
  const int64_t N = static_cast<int64_t>(ids.size());
  ASSERT_GT(N, 2 * L);  // several windows
  auto ref = GPT2Model::load(ref_dir), cand = GPT2Model::load(cand_dir);
  const int64_t V = 50257;
  std::vector<Real> kls;
  int64_t same = 0;
  Real nll_ref = 0, nll_cand = 0;
  // transformers' sliding windows: each position after the first scored once,
  // by the first window that reaches it, with the context that window has.
  int64_t prev_end = 0;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + L, N);
    TokenBatch tb;
    tb.batch = 1;
    tb.seq = end - begin;
    tb.ids.assign(ids.begin() + begin, ids.begin() + end);
    const Tensor lr = ref->lm_logits(tb), lc = cand->lm_logits(tb);
    for (int64_t p = std::max(prev_end, begin + 1); p < end; ++p) {
      const float* a = lr.data<float>() + (p - 1 - begin) * V;
      const float* b = lc.data<float>() + (p - 1 - begin) * V;
      kls.push_back(kl(a, b, V));
      same += first_argmax(a, V) == first_argmax(b, V);
      nll_ref -= log_softmax(a, V)[ids[p]];
      nll_cand -= log_softmax(b, V)[ids[p]];
    }
    prev_end = end;
    if (end == N) break;
  }
  ASSERT_EQ(static_cast<int64_t>(kls.size()), N - 1);
  expect_stats(j, kls, same);
  expect_close(j, "ppl_reference", static_cast<double>(std::exp(nll_ref / kls.size())));
  expect_close(j, "ppl_candidate", static_cast<double>(std::exp(nll_cand / kls.size())));
  EXPECT_GT(j["kld_mean"].get<double>(), 0.0);  // nf4 did change the model
  EXPECT_EQ(j["max_length"], L);
  EXPECT_EQ(j["stride"], stride);
}

TEST(CliKld, DataModeComparesClassDistributions) {
  const auto [ref_dir, cand_dir] = model_pair(ModelKind::SequenceClassification, "int8-tensor");
  const std::vector<std::pair<std::string, int>> rows = {
      {"Stocks rallied on Friday after the central bank held rates.", 2},
      {"The striker scored twice in the second half.", 1},
      {"A new chip promises faster machine learning.", 3},
      {"Leaders met in Geneva to discuss the ceasefire.", 0},
      {"Quarterly earnings beat analysts' forecasts.", 2},
      {"The rover sent back images of an ancient lake bed.", 3}};
  std::string csv = "text,label\n";
  for (const auto& [t, l] : rows) csv += "\"" + t + "\"," + std::to_string(l) + "\n";
  const fs::path data = temp_dir("kld_data") / "d.csv";
  write_file_atomic(data, csv);
  auto r = run_gpt2q("kld --reference " + shell_quote(ref_dir) + " --candidate " + shell_quote(cand_dir) + " --data " +
                     shell_quote(data) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()) +
                     " --max-length 16 --batch-size 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);

  const Tokenizer tok = Tokenizer::load(gpt2_tokenizer_dir());
  auto ref = GPT2Model::load(ref_dir), cand = GPT2Model::load(cand_dir);
  std::vector<Real> kls;
  int64_t same = 0, right_ref = 0, right_cand = 0;
  for (const auto& [t, label] : rows) {
    auto ids = tok.encode(t);
    ids.resize(std::min<size_t>(ids.size(), 16));
    const TokenBatch tb = TokenBatch::from_sequences({ids}, 50256);
    const Tensor a = ref->class_logits(tb), b = cand->class_logits(tb);
    kls.push_back(kl(a.data<float>(), b.data<float>(), 4));
    same += first_argmax(a.data<float>(), 4) == first_argmax(b.data<float>(), 4);
    right_ref += first_argmax(a.data<float>(), 4) == label;
    right_cand += first_argmax(b.data<float>(), 4) == label;
  }
  expect_stats(j, kls, same);
  expect_close(j, "accuracy_reference", static_cast<double>(right_ref) / rows.size());
  expect_close(j, "accuracy_candidate", static_cast<double>(right_cand) / rows.size());
}

TEST(CliKld, ArgumentErrors) {
  const auto [ref_dir, cand_dir] = model_pair(ModelKind::CausalLM, "fp4");
  const fs::path text_file = temp_dir("kld_err") / "t.txt";
  write_file_atomic(text_file, "Hello world, hello again.");
  const std::string base = "kld --reference " + shell_quote(ref_dir) + " --candidate " + shell_quote(cand_dir) +
                           " --tokenizer " + shell_quote(gpt2_tokenizer_dir());
  auto r = run_gpt2q(base);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: give exactly one of --text FILE and --data FILE\n");
  r = run_gpt2q(base + " --text " + shell_quote(text_file) + " --max-length 65");
  EXPECT_EQ(r.err, "gpt2q: error: --max-length 65: must be in [1, 64] (the models' n_positions)\n");
  // Models of different vocabularies cannot be compared.
  GPT2Config small = gpt2_vocab_config(ModelKind::CausalLM);
  small.vocab_size = 60000;
  const fs::path other = write_small_checkpoint("kld_other", small);
  r = run_gpt2q("kld --reference " + shell_quote(ref_dir) + " --candidate " + shell_quote(other) + " --text " +
                shell_quote(text_file) + " --tokenizer " + shell_quote(gpt2_tokenizer_dir()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "gpt2q: error: " + other.string() + ": vocab_size 60000 differs from the reference's 50257 (" +
                       ref_dir.string() + ")\n");
}

}  // namespace
