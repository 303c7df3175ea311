#include "core/utf8.h"

#include <cstdint>
#include <cstring>

namespace gpt2q {

size_t utf8_sequence_length(std::string_view s, size_t i, bool* ok) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  *ok = false;
  if (b0 < 0x80) {
    *ok = true;
    return 1;
  }
  // The lead byte decides the length and the allowed range of the second
  // byte; the ranges exclude overlongs, surrogates and code points > U+10FFFF.
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 1;  // 80..C1, F5..FF never start a sequence
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return k;  // truncated: the prefix is one subpart
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < lo || b > hi) return k;
    lo = 0x80;
    hi = 0xBF;
  }
  *ok = true;
  return need + 1;
}

size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII runs dominate real text: test 8 bytes at a time.
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    bool ok;
    const size_t len = utf8_sequence_length(s, i, &ok);
    if (!ok) return i;
    i += len;
  }
  return kUtf8Valid;
}

}  // namespace gpt2q
