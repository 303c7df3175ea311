#include "text/byte_unicode.h"

#include "text/tokenizer.h"
#include "text/utf8.h"

namespace gpt2q::text {

const ByteUnicodeMap& ByteUnicodeMap::get() {
  static const ByteUnicodeMap map;
  return map;
}

ByteUnicodeMap::ByteUnicodeMap() {
  from_cp_.fill(-1);
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    char32_t cp = printable(b) ? static_cast<char32_t>(b) : next++;
    to_cp_[b] = cp;
    from_cp_[cp] = static_cast<int16_t>(b);
  }
}

std::optional<std::string> ByteUnicodeMap::token_to_bytes(std::string_view token) const {
  if (!valid_utf8(token)) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    auto b = to_byte(next_codepoint(token, i));
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
  }
  return out;
}

std::string ByteUnicodeMap::bytes_to_token(std::string_view bytes) const {
  std::string out;
  for (unsigned char b : bytes) append_utf8(out, to_cp_[b]);
  return out;
}

}  // namespace gpt2q::text
