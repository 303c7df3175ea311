// fuzz_vocab_merges: Tokenizer::from_vocab_merges on arbitrary vocab.json +
// merges.txt. Input: vocab.json, the separator kSeparator, merges.txt (no
// separator: all of it is vocab.json and merges.txt is empty). A tokenizer
// that loads then encodes a fixed text; every id it yields must decode.
// Seeds: the shared tiny_gpt2 and GPT-2 tokenizers (fuzz.sh joins their two
// files) and the generated ones below.
#include <filesystem>
#include <string_view>

#include "support/fuzz_support.h"
#include "text/tokenizer.h"

using namespace gpt2q;
using gpt2q::fuzz::nested;
using gpt2q::fuzz::write_seed;

namespace {

// Also in fuzz/dict/vocab_merges.dict and scripts/fuzz.sh.
constexpr std::string_view kSeparator = "\n--merges.txt--\n";

std::string input(std::string_view vocab, std::string_view merges) {
  std::string s(vocab);
  s += kSeparator;
  s += merges;
  return s;
}

// The byte-level spelling of a, b and space ("Ġ") plus their merges.
constexpr const char* kVocab = R"({"<|endoftext|>":0,"a":1,"b":2,"\u0120":3,"ab":4,"\u0120a":5,"\u0120ab":6})";
constexpr const char* kMerges = "#version: 0.2\na b\n\xC4\xA0 a\n\xC4\xA0" "a b\n";

void write_seeds(const std::filesystem::path& dir) {
  write_seed(dir, "gen-small", input(kVocab, kMerges));
  write_seed(dir, "gen-crlf", input(kVocab, "a b\r\n\xC4\xA0 a\r\n"));
  write_seed(dir, "gen-no-merges", input(kVocab, ""));
  write_seed(dir, "gen-sparse-ids", input(R"({"<|endoftext|>":2000,"a":1,"b":999})", ""));

  constexpr size_t kDeep = 100'000;
  write_seed(dir, "hostile-deep-vocab", input(nested("[", "]", kDeep), kMerges));
  write_seed(dir, "hostile-deep-vocab-value", input(R"({"<|endoftext|>":)" + nested("[", "]", kDeep) + "}", ""));
  write_seed(dir, "hostile-deep-vocab-object", input(nested("{\"a\":", "}", kDeep / 2, "1"), ""));
  write_seed(dir, "hostile-huge-key", input(R"({"<|endoftext|>":0,")" + std::string(1'000'000, 'a') + "\":1}", ""));
  write_seed(dir, "hostile-max-id", input(R"({"<|endoftext|>":2147483647,"a":0})", ""));
  write_seed(dir, "hostile-duplicate-ids", input(R"({"<|endoftext|>":0,"a":0})", ""));
  write_seed(dir, "hostile-unknown-merge", input(kVocab, "x y\n"));
  write_seed(dir, "hostile-bad-merge-line", input(kVocab, "a  b\n a\nab\n"));
  // A long word of one repeated byte with a merge for it: BPE's worst case.
  std::string many_merges;
  std::string vocab = R"({"<|endoftext|>":0,"a":1)";
  std::string tok = "a";
  for (int i = 2; i < 400; ++i) {
    many_merges += tok + " a\n";
    tok += "a";
    vocab += fmt::format(",\"{}\":{}", tok, i);
  }
  write_seed(dir, "hostile-chain-merges", input(vocab + "}", many_merges));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::seed_mode(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile vocab_file("vocab.json");
  static fuzz::MemFile merges_file("merges.txt");
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t sep = in.find(kSeparator);
  vocab_file.set(in.substr(0, sep));
  merges_file.set(sep == std::string_view::npos ? std::string_view() : in.substr(sep + kSeparator.size()));
  fuzz::expect_only_errors([&] {
    Tokenizer tok = Tokenizer::from_vocab_merges(vocab_file.path(), merges_file.path());
    const std::string text = "ab aab b<|endoftext|> abab\n\xC3\xA9 aaaaaaaa";
    std::vector<int32_t> ids = tok.encode(text);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) fuzz::finding("encode produced an id outside the vocabulary");
    try {
      (void)tok.decode(ids);
    } catch (const Error& e) {
      fuzz::finding(std::string("decode refuses ids that encode produced: ") + e.what());
    }
  });
  return 0;
}
