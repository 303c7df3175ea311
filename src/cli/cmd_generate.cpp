// `gpt2q generate --model DIR --prompt TEXT`: continue a prompt with the fp32
// model and the KV cache; it stops after the model's eos_token_id unless
// --ignore-eos. Greedy by default (the same ids as transformers'
// greedy generate); --temperature / --top-k / --seed switch to seeded
// sampling (model/sampling.h documents the draw).
#include <cmath>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/model_args.h"
#include "core/error.h"
#include "model/gpt2.h"
#include "text/tokenizer.h"

namespace {

using namespace gpt2q;
using gpt2q::cli::load_model;

struct GenerateArgs {
  std::string model, prompt, tokenizer;
  cli::DeviceArgs device;
  int64_t max_new_tokens = 20;
  bool greedy = false, ignore_eos = false, stop_at_eos_alias = false, json = false;
  float temperature = 1.0f;
  int64_t top_k = 0;
  uint64_t seed = 0;
  bool sampling_requested = false;
};

// CLI::PositiveNumber accepts "inf" and, for "-1", prints its bound with all
// 309 digits of DBL_MAX; this says what is wanted instead.
const CLI::Validator kPositiveFinite(
    [](std::string& s) -> std::string {
      double v = 0;
      if (CLI::detail::lexical_cast(s, v) && std::isfinite(v) && v > 0) return {};
      return "must be a finite number > 0, got '" + s.substr(0, 40) + (s.size() > 40 ? "...'" : "'");
    },
    "NUMBER > 0");

void run_generate(const GenerateArgs& a) {
  auto model = load_model(a.model, a.device);
  const std::string tok_dir = a.tokenizer.empty() ? a.model : a.tokenizer;
  if (a.tokenizer.empty() && !Tokenizer::present(tok_dir))
    fail("{}: no tokenizer files (vocab.json + merges.txt, encoder.json + vocab.bpe, or tokenizer.json); pass "
         "--tokenizer DIR",
         tok_dir);
  Tokenizer tok = Tokenizer::load(tok_dir);
  if (model->is_classifier())
    fail("{}: a sequence classifier has no language-model head to generate with", a.model);
  if (tok.vocab_size() > model->config().vocab_size)
    fail("{}: the tokenizer has {} tokens but the model's vocab_size is {}", tok_dir, tok.vocab_size(),
         model->config().vocab_size);

  std::vector<int32_t> prompt = tok.encode(a.prompt, "--prompt");
  if (prompt.empty()) fail("--prompt: the prompt encodes to no tokens");

  GenerateOptions opts;
  opts.max_new_tokens = a.max_new_tokens;
  opts.greedy = !a.sampling_requested;
  opts.temperature = a.temperature;
  opts.top_k = a.top_k;
  opts.seed = a.seed;
  opts.stop_at_eos = !a.ignore_eos;
  std::vector<int32_t> ids = generate(*model, prompt, opts);
  std::string text = tok.decode(ids);
  if (a.json) {
    cli::print_json({{"ids", ids}, {"text", text}, {"prompt_tokens", prompt.size()}});
  } else {
    fmt::print("{}\n", text);
  }
}

}  // namespace

GPT2Q_COMMAND(generate) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a GPT-2 checkpoint (greedy or seeded sampling)");
  cmd->add_option("--model", args->model, "Checkpoint directory (config.json + model.safetensors)")->required();
  cli::add_device_options(cmd, args->device);
  cmd->add_option("--prompt", args->prompt, "Text to continue")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer directory (default: the model directory)");
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "Tokens to add")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  auto* greedy = cmd->add_flag("--greedy", args->greedy, "Argmax decoding (the default)");
  auto* temp = cmd->add_option("--temperature", args->temperature, "Sample with this temperature (> 0)")
                   ->check(kPositiveFinite);
  auto* top_k = cmd->add_option("--top-k", args->top_k, "Sample from the K most likely tokens (0: all)")
                    ->check(CLI::NonNegativeNumber);
  auto* seed = cmd->add_option("--seed", args->seed, "Seed of the sampler's std::mt19937_64");
  greedy->excludes(temp)->excludes(top_k)->excludes(seed);
  // Generation stops at the model's eos_token_id by default (transformers,
  // llama.cpp); --stop-at-eos was the opt-in before and stays accepted.
  auto* ignore_eos = cmd->add_flag("--ignore-eos", args->ignore_eos,
                                   "Go on past the model's eos_token_id (default: stop after it)");
  cmd->add_flag("--stop-at-eos", args->stop_at_eos_alias, "Stop after eos_token_id (the default; kept for old scripts)")
      ->excludes(ignore_eos);
  cmd->add_flag("--json", args->json, "Print {\"ids\": [...], \"text\": ...} on one line");
  cmd->callback([args, temp, top_k, seed] {
    GenerateArgs a = *args;
    a.sampling_requested = temp->count() > 0 || top_k->count() > 0 || seed->count() > 0;
    run_generate(a);
  });
}
