// The UTF-8 validator (core/utf8.h, used by io for data files) against an
// independent decoder written from the definition (RFC 3629): decode the code
// point, then reject overlong forms, surrogates and values past U+10FFFF.
#include <gtest/gtest.h>

#include <string>

#include "core/utf8.h"

using namespace gpt2q;

namespace {

size_t reference_first_invalid(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
    if (len == 0) return i;
    uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (int k = 1; k < len; ++k) {
      if (i + k >= s.size()) return i;
      auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += len;
  }
  return kUtf8Valid;
}

}  // namespace

TEST(Utf8, AllStringsUpToThreeBytesAgreeWithReference) {
  std::string s;
  for (int a = 0; a < 256; ++a) {
    s = std::string(1, static_cast<char>(a));
    ASSERT_EQ(first_invalid_utf8(s), reference_first_invalid(s)) << a;
    for (int b = 0; b < 256; ++b) {
      s = {static_cast<char>(a), static_cast<char>(b)};
      ASSERT_EQ(first_invalid_utf8(s), reference_first_invalid(s)) << a << " " << b;
      for (int c = 0; c < 256; ++c) {
        s = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
        ASSERT_EQ(first_invalid_utf8(s), reference_first_invalid(s)) << a << " " << b << " " << c;
      }
    }
  }
}

TEST(Utf8, FourByteSequencesAgreeWithReference) {
  const int edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xFF};
  for (int a = 0xE0; a < 256; ++a)
    for (int b = 0x80; b < 0xC0; ++b)
      for (int c : edges)
        for (int d : edges) {
          std::string s = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), static_cast<char>(d)};
          ASSERT_EQ(first_invalid_utf8(s), reference_first_invalid(s)) << a << " " << b << " " << c << " " << d;
        }
}

TEST(Utf8, ReportsOffsetOfFirstBadSequence) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"));
  EXPECT_EQ(first_invalid_utf8("ab\xff" "cd"), 2u);
  EXPECT_EQ(first_invalid_utf8("ab\xe2\x82"), 2u);            // truncated at the end
  EXPECT_EQ(first_invalid_utf8("\xc3\xa9\xed\xa0\x80"), 2u);  // surrogate U+D800
  EXPECT_EQ(first_invalid_utf8("x\xc0\x80"), 1u);             // overlong NUL
  EXPECT_EQ(first_invalid_utf8("\xf4\x90\x80\x80"), 0u);      // U+110000
  EXPECT_EQ(first_invalid_utf8(std::string_view("a\0b", 3)), kUtf8Valid);
}
