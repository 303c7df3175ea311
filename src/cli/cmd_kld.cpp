// gpt2q kld: how far a candidate model (e.g. a quantized checkpoint) drifts
// from a reference, in the manner of llama.cpp's `llama-perplexity
// --kl-divergence`: per predicted token (text) or per example (classifier
// data), KL(P_ref || P_cand) = Σ_v p_ref(v) · (log p_ref(v) − log p_cand(v)),
// with both distributions the softmax of the models' logits, in double
// precision. Reported: mean, median, p90, p99 and max of the KL values, top-1
// agreement (the argmax, lowest index on ties, is the same), and in text mode
// the perplexity of both models over the same positions.
//
// Text mode scores the positions `gpt2q perplexity` scores: sliding windows of
// --max-length tokens every --stride tokens (eval/perplexity.h), each position
// once. Data mode classifies each text (truncated to --max-length tokens) with
// both classifiers.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "cli/command.h"
#include "cli/model_args.h"
#include "core/error.h"
#include "eval/classify.h"
#include "eval/divergence.h"
#include "eval/perplexity.h"
#include "io/dataset.h"
#include "model/gpt2.h"

namespace {

struct KldArgs {
  std::string reference, candidate;
  std::optional<std::string> text, data, tokenizer, format;
  gpt2q::cli::DeviceArgs device;  // --compute-dtype applies to the candidate
  std::optional<int64_t> max_length, stride;
  int64_t batch_size = 8;
  bool json = false;
};

void check_same_shape(const gpt2q::GPT2Model& ref, const gpt2q::GPT2Model& cand, const KldArgs& a) {
  const auto &r = ref.config(), &c = cand.config();
  if (r.vocab_size != c.vocab_size)
    gpt2q::fail("{}: vocab_size {} differs from the reference's {} ({})", a.candidate, c.vocab_size, r.vocab_size,
                a.reference);
  if (ref.kind() != cand.kind())
    gpt2q::fail("{}: a {} cannot be compared with the reference's {} ({})", a.candidate,
                gpt2q::architecture_name(cand.kind()), gpt2q::architecture_name(ref.kind()), a.reference);
  if (ref.num_labels() != cand.num_labels())
    gpt2q::fail("{}: {} labels, the reference ({}) has {}", a.candidate, cand.num_labels(), a.reference,
                ref.num_labels());
}


void run(const KldArgs& a) {
  if (a.text.has_value() == a.data.has_value()) gpt2q::fail("give exactly one of --text FILE and --data FILE");
  if (a.max_length && *a.max_length < 1) gpt2q::fail("--max-length {}: must be at least 1", *a.max_length);
  if (a.stride && *a.stride < 1) gpt2q::fail("--stride {}: must be at least 1", *a.stride);
  if (a.stride && a.data) gpt2q::fail("--stride applies to --text only");
  if (a.batch_size < 1) gpt2q::fail("--batch-size {}: must be at least 1", a.batch_size);
  // Both on the same device; the reference with its own (fp32) arithmetic.
  const auto ref = gpt2q::cli::load_model(a.reference, gpt2q::cli::DeviceArgs{a.device.device, std::nullopt});
  const auto cand = gpt2q::cli::load_model(a.candidate, a.device);
  check_same_shape(*ref, *cand, a);
  const int64_t n_positions = std::min(ref->config().n_positions, cand->config().n_positions);
  const auto tokenizer = gpt2q::cli::load_model_tokenizer(a.reference, a.tokenizer, ref->config());

  std::vector<gpt2q::Divergence> d;
  nlohmann::json j = {{"reference", a.reference}, {"candidate", a.candidate}};
  if (a.text) {
    if (ref->is_classifier()) gpt2q::fail("{} is a classifier; use --data FILE with it", a.reference);
    const int64_t max_length = a.max_length.value_or(n_positions);
    if (max_length > n_positions)
      gpt2q::fail("--max-length {}: must be in [1, {}] (the models' n_positions)", max_length, n_positions);
    const int64_t stride = a.stride.value_or(std::max<int64_t>(1, max_length / 2));
    if (stride > max_length) gpt2q::fail("--stride {}: must be in [1, {}] (the max length)", stride, max_length);
    const auto ids = tokenizer.encode(gpt2q::read_text_file(*a.text), *a.text);
    if (ids.size() < 2) gpt2q::fail("{}: {} token(s); at least 2 are needed", *a.text, ids.size());
    d = gpt2q::text_divergences(*ref, *cand, ids, max_length, stride);
    if (d.empty()) gpt2q::fail("{}: no position gets scored with --max-length {}", *a.text, max_length);
    double nr = 0, nc = 0;
    for (const auto& x : d) {
      nr += x.nll_ref;
      nc += x.nll_cand;
    }
    j["text"] = *a.text;
    j["max_length"] = max_length;
    j["stride"] = stride;
    j["ppl_reference"] = std::exp(nr / static_cast<double>(d.size()));
    j["ppl_candidate"] = std::exp(nc / static_cast<double>(d.size()));
  } else {
    gpt2q::require_classifier(*ref, a.reference);
    const auto format = a.format ? gpt2q::parse_data_format(*a.format) : gpt2q::guess_data_format(*a.data);
    const gpt2q::Dataset data = gpt2q::load_dataset(*a.data, format);
    gpt2q::ClassifyOptions opts;
    opts.max_length = a.max_length.value_or(std::min<int64_t>(128, n_positions));
    if (opts.max_length > n_positions)
      gpt2q::fail("--max-length {}: must be in [1, {}] (the models' n_positions)", opts.max_length, n_positions);
    opts.batch_size = a.batch_size;
    opts.warmup = false;
    const auto seqs = gpt2q::tokenize_for_classification(tokenizer, data, opts.max_length);
    const auto rr = gpt2q::classify_tokens(*ref, seqs, opts);
    const auto rc = gpt2q::classify_tokens(*cand, seqs, opts);
    int64_t right_ref = 0, right_cand = 0;
    d = gpt2q::row_divergences(rr.logits, rc.logits, rr.num_labels);
    for (size_t i = 0; i < seqs.size(); ++i) {
      right_ref += rr.predictions[i] == data.rows[i].label;
      right_cand += rc.predictions[i] == data.rows[i].label;
    }
    j["data"] = *a.data;
    j["max_length"] = opts.max_length;
    j["accuracy_reference"] = static_cast<double>(right_ref) / static_cast<double>(seqs.size());
    j["accuracy_candidate"] = static_cast<double>(right_cand) / static_cast<double>(seqs.size());
  }

  const auto sum = gpt2q::summarize_divergences(d);
  j["count"] = sum.count;
  j["kld_mean"] = sum.kl_mean;
  j["kld_median"] = sum.kl_median;
  j["kld_p90"] = sum.kl_p90;
  j["kld_p99"] = sum.kl_p99;
  j["kld_max"] = sum.kl_max;
  j["top1_agreement"] = sum.top1_agreement;
  if (a.json) {
    gpt2q::cli::print_json(j);
    return;
  }
  fmt::print("reference:  {}\ncandidate:  {}\n", a.reference, a.candidate);
  if (a.text) {
    fmt::print("text:       {} ({} positions scored, max_length {}, stride {})\n", *a.text, d.size(),
               j["max_length"].get<int64_t>(), j["stride"].get<int64_t>());
    fmt::print("PPL:        reference {:.4f}, candidate {:.4f}\n", j["ppl_reference"].get<double>(),
               j["ppl_candidate"].get<double>());
  } else {
    fmt::print("data:       {} ({} examples, max_length {})\n", *a.data, d.size(), j["max_length"].get<int64_t>());
    fmt::print("accuracy:   reference {:.4f}, candidate {:.4f}\n", j["accuracy_reference"].get<double>(),
               j["accuracy_candidate"].get<double>());
  }
  fmt::print("KLD:        mean {:.6g}, median {:.6g}, p90 {:.6g}, p99 {:.6g}, max {:.6g}\n",
             j["kld_mean"].get<double>(), j["kld_median"].get<double>(), j["kld_p90"].get<double>(),
             j["kld_p99"].get<double>(), j["kld_max"].get<double>());
  fmt::print("top-1:      {:.4f} agreement\n", j["top1_agreement"].get<double>());
}

}  // namespace

GPT2Q_COMMAND(kld) {
  auto* cmd = app.add_subcommand(
      "kld", "KL divergence of a candidate model's predictions from a reference's (e.g. quantized vs original)");
  auto a = std::make_shared<KldArgs>();
  cmd->add_option("--reference", a->reference, "Reference checkpoint directory")->required();
  cmd->add_option("--candidate", a->candidate, "Candidate checkpoint directory (e.g. quantized)")->required();
  gpt2q::cli::add_device_options(cmd, a->device);
  cmd->add_option("--text", a->text, "Text file: next-token distributions of two GPT2LMHeadModels");
  cmd->add_option("--data", a->data, "Labelled data (AG News CSV, text/label CSV, JSONL): class distributions");
  cmd->add_option("--format", a->format, "--data format: agnews, csv or jsonl (default: from the file)");
  cmd->add_option("--max-length", a->max_length,
                  "Tokens per window (text; default n_positions) or per text (data; 128)");
  cmd->add_option("--stride", a->stride, "Text: tokens between window starts (default max-length / 2)");
  cmd->add_option("--batch-size", a->batch_size, "Data: texts per batch")->default_val(8);
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer directory when the reference has no tokenizer files");
  cmd->add_flag("--json", a->json, "Print one JSON object instead of text");
  cmd->callback([a] { run(*a); });
}
