#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/pretokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "text/unicode_classes.inc"
#include "text/utf8.h"

namespace gpt2q::text {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// Match data is per thread: the compiled pattern is shared read-only, so
// encode() can run on several threads at once. One ovector pair is enough
// because the pattern has no capture groups.
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(md); }
  };
  thread_local Holder holder;
  if (!holder.md) throw std::bad_alloc();
  return holder.md;
}

using Ranges = std::vector<std::pair<char32_t, char32_t>>;  // inclusive
constexpr char32_t kCodeSpace = 0x110000;

template <size_t N>
Ranges to_ranges(const char32_t (&table)[N][2]) {
  Ranges r;
  for (const auto& e : table) r.emplace_back(e[0], e[1]);
  return r;
}

std::string spell(const Ranges& ranges) {
  std::string s;
  for (auto [lo, hi] : ranges) {
    s += fmt::format("\\x{{{:X}}}", static_cast<uint32_t>(lo));
    if (hi != lo) s += fmt::format("-\\x{{{:X}}}", static_cast<uint32_t>(hi));
  }
  return s;
}

pcre2_code* compile(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                             &err, &err_off, nullptr);
  GPT2Q_CHECK(code, "PCRE2 rejected the pre-tokenizer pattern at {}: {}", err_off, pcre2_message(err));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT, pcre2_match interprets
  return code;
}

// Which code points the system PCRE2 puts in `property` (e.g. \p{L}): one
// scan over the UTF-8 of every scalar value in order.
std::vector<uint8_t> pcre2_members(const std::string& all_codepoints, const std::string& property) {
  std::vector<uint8_t> member(kCodeSpace, 0);
  pcre2_code* code = compile(property + "+");
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  auto subject = reinterpret_cast<PCRE2_SPTR>(all_codepoints.data());
  size_t pos = 0;
  while (pcre2_match(code, subject, all_codepoints.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr) > 0) {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    for (size_t i = ov[0]; i < ov[1];) member[next_codepoint(all_codepoints, i)] = 1;
    pos = ov[1];
  }
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return member;
}

// HF's class as the body of a PCRE2 character class. PCRE2's own property is
// far faster than a long range list for non-ASCII text (its JIT tests ranges
// one by one), so use it plus the code points its older Unicode tables lack;
// when they hold some that HF's do not, spell out every range instead.
std::string class_body(const Ranges& hf, const std::string& property, const std::string& all_codepoints) {
  std::vector<uint8_t> want(kCodeSpace, 0);
  for (auto [lo, hi] : hf)
    for (char32_t c = lo; c <= hi; ++c) want[c] = 1;
  const std::vector<uint8_t> have = pcre2_members(all_codepoints, property);
  // Code points below 256 listed explicitly go into PCRE2's bitmap, which the
  // JIT tests before anything else: ASCII text never reaches the property.
  Ranges latin1, missing;
  for (auto [lo, hi] : hf)
    if (lo < 0x100) latin1.emplace_back(lo, std::min<char32_t>(hi, 0xFF));
  for (char32_t c = 0; c < kCodeSpace; ++c) {
    if (have[c] && !want[c]) return spell(hf);
    if (want[c] && !have[c]) {
      if (!missing.empty() && missing.back().second + 1 == c)
        missing.back().second = c;
      else
        missing.emplace_back(c, c);
    }
  }
  return spell(latin1) + property + spell(missing);
}

}  // namespace

std::string PreTokenizer::expanded_pattern() {
  static const std::string pattern = [] {
    namespace uc = unicode_classes;
    std::string all;
    for (char32_t c = 0; c < kCodeSpace; ++c)
      if (c < 0xD800 || c > 0xDFFF) append_utf8(all, c);
    const std::string l = class_body(to_ranges(uc::kLetter), "\\p{L}", all);
    const std::string n = class_body(to_ranges(uc::kNumber), "\\p{N}", all);
    // PCRE2's \s differs from oniguruma's (U+180E) and the list is short.
    const std::string s = spell(to_ranges(uc::kSpace));
    const std::string letter = "[" + l + "]", number = "[" + n + "]", space = "[" + s + "]";
    const std::string other = "[^" + l + n + s + "]", not_space = "[^" + s + "]";
    // Same alternatives, same order as kPattern.
    return "'s|'t|'re|'ve|'m|'ll|'d| ?" + letter + "+| ?" + number + "+| ?" + other + "+|" + space + "+(?!" +
           not_space + ")|" + space + "+";
  }();
  return pattern;
}

PreTokenizer::PreTokenizer() {
  auto* code = compile(expanded_pattern());
  code_ = code;
  size_t jit_size = 0;
  jit_ = pcre2_pattern_info(code, PCRE2_INFO_JITSIZE, &jit_size) == 0 && jit_size > 0;
}

PreTokenizer::~PreTokenizer() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool PreTokenizer::find(std::string_view text, size_t start, size_t* begin, size_t* end) const {
  auto* code = static_cast<pcre2_code*>(code_);
  auto* md = thread_match_data();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // The caller has validated the UTF-8 already.
  int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), start, 0, md, nullptr)
                : pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("pre-tokenizer: PCRE2 match failed at byte {}: {}", start, pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *begin = ov[0];
  *end = ov[1];
  return true;
}

}  // namespace gpt2q::text
