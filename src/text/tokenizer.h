#pragma once
// GPT-2 byte-level BPE, equal to Hugging Face GPT2TokenizerFast: the GPT-2
// pre-tokenizer regex (PCRE2, UTF + UCP), bytes -> unicode map, merges by rank,
// and <|endoftext|> as a special token matched in the raw text.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gpt2q {

class Tokenizer {
 public:
  // Looks in `dir` for vocab.json + merges.txt, else encoder.json + vocab.bpe,
  // else tokenizer.json. Error names the dir and what is missing or malformed.
  static Tokenizer load(const std::filesystem::path& dir);
  static bool present(const std::filesystem::path& dir);  // any of the three layouts
  static Tokenizer from_vocab_merges(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);
  static Tokenizer from_tokenizer_json(const std::filesystem::path& tokenizer_json);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text must be valid UTF-8 (Error otherwise; `source` names the input).
  std::vector<int32_t> encode(std::string_view text, std::string_view source = "input") const;
  std::string decode(std::span<const int32_t> ids) const;
  int32_t eos_id() const;      // <|endoftext|>
  int64_t vocab_size() const;  // including special tokens

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when `s` is valid UTF-8; otherwise sets *bad_offset to the first bad byte.
bool valid_utf8(std::string_view s, size_t* bad_offset = nullptr);

}  // namespace gpt2q
