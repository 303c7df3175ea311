#pragma once
// The GPT-2 pre-tokenizer: splits text into the pieces BPE runs on, with the
// regex HF's ByteLevel pre-tokenizer uses, compiled by PCRE2 (UTF + UCP, JIT
// when the library has it). Shared read-only between threads; match state
// is per thread.
//
// \p{L}, \p{N} and \s are spelled out as code point ranges (unicode_classes.inc)
// because they must mean what they mean to HF's oniguruma (Unicode 16), not
// to the system PCRE2 (10.42: Unicode 14, and U+180E counted as space).
#include <string>
#include <string_view>

namespace gpt2q::text {

class PreTokenizer {
 public:
  static constexpr std::string_view kPattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  bool jit() const { return jit_; }
  // kPattern with its classes expanded into the ranges actually compiled.
  static std::string expanded_pattern();

  // Calls on_piece(std::string_view) for every piece of `text` (valid UTF-8),
  // in order; the pieces cover the text exactly.
  template <typename F>
  void split(std::string_view text, F&& on_piece) const {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t begin, end;
      if (!find(text, pos, &begin, &end)) begin = end = text.size();
      // Every character falls in one of the classes, so gaps cannot occur;
      // HF would keep one as its own piece, and so do we.
      if (begin > pos) on_piece(text.substr(pos, begin - pos));
      if (end > begin) on_piece(text.substr(begin, end - begin));
      pos = end;
    }
  }

  // Next match at or after `start`; false when there is none.
  bool find(std::string_view text, size_t start, size_t* begin, size_t* end) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*, kept out of the header
  bool jit_ = false;
};

}  // namespace gpt2q::text
