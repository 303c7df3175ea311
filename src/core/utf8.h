#pragma once
// Strict UTF-8 validation, as Python's and PyTorch tokenizers' decoders judge
// it: no overlong forms, no surrogates (U+D800..U+DFFF), nothing past U+10FFFF.
// Lives in core so that io can check data files without depending on text.
#include <cstddef>
#include <string_view>

namespace gpt2q {

inline constexpr size_t kUtf8Valid = static_cast<size_t>(-1);

// Offset of the first byte that does not start (or continue) a valid
// sequence, or kUtf8Valid when all of `s` is valid.
size_t first_invalid_utf8(std::string_view s);

inline bool is_valid_utf8(std::string_view s) { return first_invalid_utf8(s) == kUtf8Valid; }

// At s[i] (i < s.size()): the length of the well-formed sequence starting
// there (*ok = true), or the length (>= 1) of its maximal ill-formed subpart
// (*ok = false), as Unicode 3.9 "U+FFFD substitution of maximal subparts"
// counts it (Table 3-7). Lossy decoders replace each such subpart by one U+FFFD.
size_t utf8_sequence_length(std::string_view s, size_t i, bool* ok);

}  // namespace gpt2q
