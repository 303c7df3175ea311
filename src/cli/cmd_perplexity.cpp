// gpt2q perplexity: sliding-window perplexity of a GPT2LMHeadModel over a text
// file (transformers' "Perplexity of fixed-length models", exact counting).
#include <optional>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/model_args.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "model/gpt2.h"

namespace {

struct PerplexityArgs {
  std::string model, text;
  std::optional<std::string> tokenizer;
  gpt2q::cli::DeviceArgs device;
  std::optional<int64_t> max_length, stride;  // defaults: n_positions, max length / 2
  bool json = false;
};


void run(const PerplexityArgs& a) {
  if (a.max_length && *a.max_length < 1) gpt2q::fail("--max-length {}: must be at least 1", *a.max_length);
  if (a.stride && *a.stride < 1) gpt2q::fail("--stride {}: must be at least 1", *a.stride);
  auto model = gpt2q::cli::load_model(a.model, a.device);
  if (model->is_classifier())
    gpt2q::fail("{} is a GPT2ForSequenceClassification; perplexity needs a GPT2LMHeadModel", a.model);
  const int64_t n_positions = model->config().n_positions;
  const int64_t max_length = a.max_length.value_or(n_positions);
  if (max_length > n_positions)
    gpt2q::fail("--max-length {}: must be in [1, {}] (the model's n_positions)", max_length, n_positions);
  const int64_t stride = a.stride.value_or(std::max<int64_t>(1, max_length / 2));
  if (stride > max_length) gpt2q::fail("--stride {}: must be in [1, {}] (the max length)", stride, max_length);

  auto tokenizer = gpt2q::cli::load_model_tokenizer(a.model, a.tokenizer, model->config());
  const std::string text = gpt2q::read_text_file(a.text);
  const auto ids = tokenizer.encode(text, a.text);
  if (ids.size() < 2) gpt2q::fail("{}: {} token(s); perplexity needs at least 2", a.text, ids.size());

  gpt2q::PerplexityOptions opts;
  opts.max_length = max_length;
  opts.stride = stride;
  const auto r = gpt2q::evaluate_perplexity(*model, ids, opts);

  if (a.json) {
    gpt2q::cli::print_json({{"model", a.model},
                            {"text", a.text},
                            {"text_tokens", ids.size()},
                            {"tokens", r.tokens},
                            {"nll", r.nll},
                            {"ppl", r.ppl},
                            {"windows", r.windows},
                            {"max_length", r.max_length},
                            {"stride", r.stride},
                            {"seconds", r.seconds},
                            {"threads", gpt2q::num_threads()},
                            {"device", gpt2q::cli::device_json(model->placement())}});
    return;
  }
  fmt::print("model:      {}\n", a.model);
  fmt::print("text:       {} ({} tokens)\n", a.text, ids.size());
  fmt::print("windows:    {} (max_length {}, stride {})\n", r.windows, r.max_length, r.stride);
  fmt::print("scored:     {} tokens\n", r.tokens);
  fmt::print("mean NLL:   {:.6f} nats/token\n", r.nll);
  fmt::print("time:       {:.2f} s ({:.0f} tokens/s, {} threads)\n", r.seconds,
             r.seconds > 0 ? r.tokens / r.seconds : 0.0, gpt2q::num_threads());
  fmt::print("device:     {}\n", gpt2q::cli::device_line(model->placement()));
  fmt::print("Final estimate: PPL = {:.4f}\n", r.ppl);
}

}  // namespace

GPT2Q_COMMAND(perplexity) {
  auto args = std::make_shared<PerplexityArgs>();
  auto* cmd = app.add_subcommand("perplexity", "Sliding-window perplexity of a language model on a text file");
  cmd->add_option("--model", args->model, "GPT2LMHeadModel checkpoint dir")->required();
  gpt2q::cli::add_device_options(cmd, args->device);
  cmd->add_option("--text", args->text, "UTF-8 text file, tokenized as one string")->required();
  cmd->add_option("--max-length", args->max_length, "window length in tokens (default: n_positions)");
  cmd->add_option("--stride", args->stride, "tokens between window starts (default: max length / 2)");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer dir, used when the model dir has none");
  cmd->add_flag("--json", args->json, "print one JSON object");
  cmd->callback([args] { run(*args); });
}
