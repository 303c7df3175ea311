#pragma once
// GPT-2's reversible bytes <-> unicode map: vocab.json and merges.txt spell
// every token as one printable code point per byte. The 188 printable bytes
// ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes
// take U+0100, U+0101, ... in byte order.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gpt2q::text {

class ByteUnicodeMap {
 public:
  static const ByteUnicodeMap& get();

  char32_t to_codepoint(uint8_t byte) const { return to_cp_[byte]; }
  // The byte a code point stands for, if it is one of the 256 in the map.
  std::optional<uint8_t> to_byte(char32_t cp) const {
    if (cp >= from_cp_.size() || from_cp_[cp] < 0) return std::nullopt;
    return static_cast<uint8_t>(from_cp_[cp]);
  }
  // A token as spelled in vocab.json -> its bytes; nullopt when some
  // character is outside the map (added tokens such as "<|endoftext|>" are
  // plain ASCII and do map).
  std::optional<std::string> token_to_bytes(std::string_view token) const;
  std::string bytes_to_token(std::string_view bytes) const;

 private:
  ByteUnicodeMap();
  std::array<char32_t, 256> to_cp_{};
  std::array<int16_t, 0x100 + 68> from_cp_{};  // highest mapped code point is U+0143
};

}  // namespace gpt2q::text
