#pragma once
// Training and evaluation examples as token ids.
//   classify: each text tokenized and truncated to its first max_length
//             tokens (eval/classify.h's tokenize_for_classification), with
//             its label;
//   lm:       a text file tokenized as one stream and cut into consecutive
//             blocks of max_length tokens (HF run_clm's group_texts); a last
//             partial block is kept when it has at least 2 tokens (one
//             next-token target).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "model/gpt2.h"
#include "text/tokenizer.h"

namespace gpt2q::train {

struct Example {
  std::vector<int32_t> ids;
  int32_t label = -1;  // -1 for the LM task
};

struct Examples {
  std::vector<Example> items;
  int64_t tokens() const;  // total real tokens
};

// Rows `rows` of `data` (all rows when empty is not wanted: pass every index).
Examples classification_examples(const Tokenizer& tokenizer, const Dataset& data, const std::vector<size_t>& rows,
                                 int64_t max_length);
// Error "PATH: no text" / "PATH: fewer than 2 tokens" when nothing to learn.
Examples lm_blocks(const Tokenizer& tokenizer, const std::filesystem::path& text_file, int64_t block_size);
// Splits blocks into (train, eval) with `eval_fraction` of them, chosen by a
// seeded permutation (round half away from zero, at least one of each when
// there are two or more blocks); both parts keep file order.
std::pair<Examples, Examples> split_blocks(const Examples& blocks, double eval_fraction, uint64_t seed);

// The examples `indices` as one right-padded batch (pad_id) and their labels
// (empty for LM).
TokenBatch make_batch(const Examples& examples, std::span<const size_t> indices, int32_t pad_id,
                      std::vector<int32_t>* labels);

}  // namespace gpt2q::train
