#include "train/train_data.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/file_util.h"
#include "eval/classify.h"
#include "train/batch_order.h"

namespace gpt2q::train {

int64_t Examples::tokens() const {
  int64_t n = 0;
  for (const auto& e : items) n += static_cast<int64_t>(e.ids.size());
  return n;
}

Examples classification_examples(const Tokenizer& tokenizer, const Dataset& data, const std::vector<size_t>& rows,
                                 int64_t max_length) {
  Dataset subset;
  subset.source = data.source;
  subset.rows.reserve(rows.size());
  for (size_t r : rows) subset.rows.push_back(data.rows.at(r));
  auto seqs = tokenize_for_classification(tokenizer, subset, max_length);
  Examples out;
  out.items.reserve(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) out.items.push_back({std::move(seqs[i]), subset.rows[i].label});
  return out;
}

Examples lm_blocks(const Tokenizer& tokenizer, const std::filesystem::path& text_file, int64_t block_size) {
  GPT2Q_CHECK(block_size >= 2, "lm_blocks: block size {}", block_size);
  const std::string text = read_file(text_file);
  if (text.empty()) fail("{}: no text", text_file.string());
  const auto ids = tokenizer.encode(text, text_file.string());
  if (ids.size() < 2) fail("{}: fewer than 2 tokens, nothing to predict", text_file.string());
  Examples out;
  for (size_t begin = 0; begin < ids.size(); begin += static_cast<size_t>(block_size)) {
    const size_t end = std::min(ids.size(), begin + static_cast<size_t>(block_size));
    if (end - begin < 2) break;
    out.items.push_back({std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                              ids.begin() + static_cast<std::ptrdiff_t>(end)),
                         -1});
  }
  return out;
}

std::pair<Examples, Examples> split_blocks(const Examples& blocks, double eval_fraction, uint64_t seed) {
  const size_t n = blocks.items.size();
  auto k = static_cast<size_t>(std::llround(eval_fraction * static_cast<double>(n)));
  if (n >= 2) k = std::clamp<size_t>(k, 1, n - 1);
  auto perm = seeded_permutation(n, seed);
  std::vector<bool> is_eval(n, false);
  for (size_t i = 0; i < k; ++i) is_eval[perm[i]] = true;
  std::pair<Examples, Examples> out;
  for (size_t i = 0; i < n; ++i) (is_eval[i] ? out.second : out.first).items.push_back(blocks.items[i]);
  return out;
}

TokenBatch make_batch(const Examples& examples, std::span<const size_t> indices, int32_t pad_id,
                      std::vector<int32_t>* labels) {
  std::vector<std::vector<int32_t>> seqs;
  seqs.reserve(indices.size());
  if (labels) labels->clear();
  for (size_t i : indices) {
    const Example& e = examples.items.at(i);
    seqs.push_back(e.ids);
    if (labels && e.label >= 0) labels->push_back(e.label);
  }
  return TokenBatch::from_sequences(seqs, pad_id);
}

}  // namespace gpt2q::train
