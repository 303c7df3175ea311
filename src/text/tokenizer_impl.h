#pragma once
// Tokenizer::Impl, shared by tokenizer.cpp (encode/decode) and
// tokenizer_files.cpp (the three on-disk layouts).
#include <string>
#include <unordered_map>
#include <vector>

#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/tokenizer.h"

namespace gpt2q {

struct Tokenizer::Impl {
  // Matched in the raw text before pre-tokenization (HF "added tokens").
  struct AddedToken {
    std::string content;
    int32_t id = 0;
  };

  // `source` names the files in errors.
  Impl(const std::unordered_map<std::string, int32_t>& vocab, const std::vector<text::BpeModel::Merge>& merges,
       std::vector<AddedToken> added, const std::string& source);

  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const;

  text::BpeModel bpe;
  text::PreTokenizer pre;
  std::vector<AddedToken> added;      // longest first: wins ties at one position
  std::vector<std::string> id_bytes;  // id -> the bytes decode emits
  std::vector<uint8_t> id_known;      // id -> 1 when some token has it
  int32_t eos = -1;
  uint64_t serial = 0;  // tells this tokenizer's per-thread cache from another's
};

}  // namespace gpt2q
