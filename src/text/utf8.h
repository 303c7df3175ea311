#pragma once
// UTF-8 helpers for the tokenizer: validation lives in tokenizer.h
// (valid_utf8); here are the pieces decode() and the tests need.
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt2q::text {

// Appends the UTF-8 encoding of code point `cp` (must be a scalar value).
void append_utf8(std::string& out, char32_t cp);

// Decodes the code point starting at s[i] of VALID UTF-8 and advances i.
char32_t next_codepoint(std::string_view s, size_t& i);

// Bytes -> text the way Python's bytes.decode("utf-8", "replace") and Rust's
// String::from_utf8_lossy do it (what HF decode returns): each maximal
// ill-formed subpart (Unicode 3.9, "U+FFFD substitution of maximal subparts")
// becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

}  // namespace gpt2q::text
