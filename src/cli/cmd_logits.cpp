// gpt2q logits: the raw logits of a checkpoint for a few texts, as JSON, so
// that other tools (tools/check_finetune_output.py) can compare them with
// transformers' (--json). Classifier: [num_labels] per text, read where
// GPT2ForSequenceClassification reads them; LM: the last position's
// [vocab_size] logits per text. Texts are tokenized whole (no truncation).
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "cli/device_args.h"
#include "eval/tokenizer_lookup.h"
#include "model/gpt2.h"

namespace {

struct LogitsArgs {
  std::string model;
  std::vector<std::string> texts;
  std::optional<std::string> tokenizer;
  gpt2q::cli::DeviceArgs device;
  bool json = false;
};

void run(const LogitsArgs& a) {
  using namespace gpt2q;
  auto model = cli::load_model(a.model, a.device);
  auto tok = load_tokenizer_for(a.model, a.tokenizer ? std::optional<std::filesystem::path>(*a.tokenizer) : std::nullopt);
  const auto& cfg = model->config();
  const auto pad = static_cast<int32_t>(cfg.pad_token_id.value_or(cfg.eos_token_id.value_or(0)));
  nlohmann::json ids = nlohmann::json::array(), logits = nlohmann::json::array();
  for (const auto& text : a.texts) {
    auto seq = tok.encode(text, "--text");
    if (seq.empty()) fail("--text '{}': no tokens", text);
    if (static_cast<int64_t>(seq.size()) > cfg.n_positions)
      fail("--text: {} tokens, more than the model's {} positions", seq.size(), cfg.n_positions);
    // One text per batch: no padding, so the result is each text's own.
    const TokenBatch batch = TokenBatch::from_sequences({seq}, pad);
    Tensor out;
    if (model->is_classifier()) {
      out = to_device(model->class_logits(batch), Device::CPU);
    } else {
      const Tensor all = to_device(model->lm_logits(batch), Device::CPU);
      out = all.view({batch.seq, cfg.vocab_size}).slice_rows(batch.seq - 1, batch.seq);
    }
    ids.push_back(seq);
    logits.push_back(std::vector<float>(out.data<float>(), out.data<float>() + out.numel()));
  }
  if (a.json) {
    cli::print_json({{"model", a.model},
                     {"architecture", architecture_name(model->kind())},
                     {"ids", ids},
                     {"logits", logits}});
    return;
  }
  for (size_t i = 0; i < a.texts.size(); ++i) {
    const auto& row = logits[i];
    const size_t shown = std::min<size_t>(row.size(), 8);
    std::string values;
    for (size_t k = 0; k < shown; ++k) values += fmt::format("{}{:.6g}", k ? " " : "", row[k].get<float>());
    fmt::print("text {}: {} tokens; logits [{}{}] ({} values)\n", i, ids[i].size(), values,
               shown < row.size() ? " ..." : "", row.size());
  }
}

}  // namespace

GPT2Q_COMMAND(logits) {
  auto a = std::make_shared<LogitsArgs>();
  auto* cmd = app.add_subcommand("logits", "Print a checkpoint's logits for some texts as JSON (classifier: per class; LM: last position)");
  cmd->add_option("--model", a->model, "checkpoint dir")->required();
  cmd->add_option("--text", a->texts, "a text (repeatable)")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer dir, used when the model dir has none");
  gpt2q::cli::add_device_options(cmd, a->device);
  cmd->add_flag("--json", a->json, "print one JSON object with all logits");
  cmd->callback([a] { run(*a); });
}
