// fuzz_tokenize: the GPT-2 tokenizer's encode on arbitrary bytes. The real
// tokenizer ($GPT2Q_DATA/gpt2-tokenizer, loaded once) must
//   - refuse invalid UTF-8 with gpt2q::Error, and only that;
//   - encode valid UTF-8 without an Error, into ids below vocab_size();
//   - give the text back from decode(encode(x)): byte-level BPE is lossless
//     on valid UTF-8 (HF's GPT2TokenizerFast is; tests/test_text_tokenizer_hf
//     checks it on every AG News and WikiText text).
// Seeds: the shared llama.cpp test-vector inputs, AG News lines and
// Shakespeare (fuzz.sh), and the Unicode edge cases below.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "support/fuzz_support.h"
#include "text/tokenizer.h"

using namespace gpt2q;
using gpt2q::fuzz::write_seed;

namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer tok = [] {
    const auto dir = fuzz::data_dir() / "gpt2-tokenizer";
    try {
      return Tokenizer::load(dir);
    } catch (const Error& e) {
      std::fprintf(stderr, "fuzz_tokenize needs the GPT-2 tokenizer (set GPT2Q_DATA): %s\n", e.what());
      std::exit(2);
    }
  }();
  return tok;
}

void write_seeds(const std::filesystem::path& dir) {
  const std::pair<const char*, std::string> seeds[] = {
      {"gen-contractions", "I'm don't you'll WE'VE they'd it's 's 't"},
      {"gen-eos", "a<|endoftext|>b <|endoftext|><|endoftext|>\n<|endoftext"},
      {"gen-whitespace", "  \t\n\r\n   x  \u00a0\u3000 \u2028\u2029 "},
      {"gen-numbers", "1234567890 3.14159 1,000,000 \xd9\xa3\xd9\xa4"},
      {"gen-unicode", "h\xC3\xA9llo \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
                      "\xE2\x80\x8D \xCC\x81" "a\xCC\x81 \xEF\xBB\xBF \xF4\x8F\xBF\xBF \x7F"},
      {"gen-invalid-utf8", "ok \xC0\xAF \xED\xA0\x80 \xF5\x80\x80\x80 \xFF"},
      {"gen-truncated-utf8", "abc \xE4\xB8"},
      {"hostile-long-word", std::string(20'000, 'x')},
      {"hostile-long-spaces", std::string(20'000, ' ')},
      {"hostile-long-digits", std::string(20'000, '7')},
      {"hostile-long-emoji", [] {
         std::string s;
         for (int i = 0; i < 5000; ++i) s += "\xF0\x9F\x98\x80";
         return s;
       }()},
  };
  for (const auto& [name, text] : seeds) write_seed(dir, name, text);
  write_seed(dir, "gen-nul", std::string("a\0b\0\0c", 6));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  (void)tokenizer();  // before the first input, so its time is not an input's
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const Tokenizer& tok = tokenizer();
  const bool valid = valid_utf8(text);
  std::vector<int32_t> ids;
  const bool encoded = fuzz::expect_only_errors([&] { ids = tok.encode(text); });
  if (!valid) {
    if (encoded) fuzz::finding("encode accepted invalid UTF-8");
    return 0;
  }
  if (!encoded) fuzz::finding("encode refused valid UTF-8");
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) fuzz::finding("encode produced an id outside the vocabulary");
  std::string back;
  try {
    back = tok.decode(ids);
  } catch (const Error& e) {
    fuzz::finding(std::string("decode refused encode's ids: ") + e.what());
  }
  if (back != text) fuzz::finding("decode(encode(x)) != x for valid UTF-8");
  return 0;
}
