#pragma once
// Which tokenizer an evaluation uses: the model dir's own files when it has
// them (any layout Tokenizer::present accepts), otherwise --tokenizer DIR.
#include <filesystem>
#include <optional>

#include "text/tokenizer.h"

namespace gpt2q {

// Error "MODEL_DIR has no tokenizer files (vocab.json+merges.txt,
// encoder.json+vocab.bpe or tokenizer.json); pass --tokenizer DIR" when the
// model dir has none and no fallback is given.
std::filesystem::path tokenizer_dir_for(const std::filesystem::path& model_dir,
                                        const std::optional<std::filesystem::path>& tokenizer_dir);
Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir,
                             const std::optional<std::filesystem::path>& tokenizer_dir);

}  // namespace gpt2q
