#include "eval/tokenizer_lookup.h"

#include "core/error.h"

namespace gpt2q {

std::filesystem::path tokenizer_dir_for(const std::filesystem::path& model_dir,
                                        const std::optional<std::filesystem::path>& tokenizer_dir) {
  if (Tokenizer::present(model_dir)) return model_dir;
  if (tokenizer_dir) return *tokenizer_dir;
  fail("{} has no tokenizer files (vocab.json+merges.txt, encoder.json+vocab.bpe or tokenizer.json); "
       "pass --tokenizer DIR",
       model_dir.string());
}

Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir,
                             const std::optional<std::filesystem::path>& tokenizer_dir) {
  return Tokenizer::load(tokenizer_dir_for(model_dir, tokenizer_dir));
}

}  // namespace gpt2q
