#pragma once
// Loading shared by the commands that run a checkpoint on text (eval, kld,
// perplexity): the tokenizer from the model dir or --tokenizer DIR, checked
// to fit the model's vocabulary.
#include <filesystem>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <memory>

#include "core/error.h"
#include "eval/tokenizer_lookup.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "cli/device_args.h"
#include "model/gpt2.h"
#include "quant/checkpoint_quantizer.h"
#include "quant/quantized_checkpoint.h"
#include "text/tokenizer.h"

namespace gpt2q::cli {

// Error "MODEL_DIR: the tokenizer has N tokens but the model's vocab_size is
// V" when the tokenizer could produce ids the model has no embedding for.
inline Tokenizer load_model_tokenizer(const std::string& model_dir, const std::optional<std::string>& tokenizer_dir,
                                      const GPT2Config& config) {
  Tokenizer tok = load_tokenizer_for(
      model_dir, tokenizer_dir ? std::optional<std::filesystem::path>(*tokenizer_dir) : std::nullopt);
  if (tok.vocab_size() > config.vocab_size)
    fail("{}: the tokenizer has {} tokens but the model's vocab_size is {}", model_dir, tok.vocab_size(),
         config.vocab_size);
  return tok;
}

}  // namespace gpt2q::cli
