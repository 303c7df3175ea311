// BpeModel::encode_word against a plain reference (find the lowest-ranked
// adjacent pair, leftmost on ties, merge it, repeat: O(n^2)) on random
// pieces, and on one multi-megabyte piece, which the heap-based merge loop
// must take in O(n log n) time (the quadratic loop would take hours).
#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <random>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "support/test_env.h"
#include "text/bpe.h"
#include "text/byte_unicode.h"
#include "text/tokenizer.h"

using namespace gpt2q;
namespace fs = std::filesystem;

namespace {

struct Gpt2Bpe {
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<text::BpeModel::Merge> merges;
  std::unordered_map<std::string, int32_t> rank;  // "left right" -> rank (a later duplicate wins)
};

const Gpt2Bpe& gpt2_bpe() {
  static const Gpt2Bpe b = [] {
    Gpt2Bpe b;
    const fs::path dir = test::gpt2_tokenizer_dir();
    const nlohmann::json vocab = nlohmann::json::parse(read_file(dir / "vocab.json"));
    for (auto& [k, v] : vocab.items()) b.vocab[k] = v.get<int32_t>();
    const std::string text = read_file(dir / "merges.txt");
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      const std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.empty() || line.starts_with("#version")) continue;
      const size_t sp = line.find(' ');
      b.rank[line] = static_cast<int32_t>(b.merges.size());
      b.merges.push_back({line.substr(0, sp), line.substr(sp + 1), "merges.txt"});
    }
    return b;
  }();
  return b;
}

std::vector<int32_t> bpe_reference(std::string_view bytes, const Gpt2Bpe& b) {
  const auto& map = text::ByteUnicodeMap::get();
  std::vector<std::string> syms;
  for (char c : bytes) {
    std::string s = map.bytes_to_token(std::string_view(&c, 1));
    if (b.vocab.count(s)) syms.push_back(std::move(s));
  }
  for (;;) {
    int32_t best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      auto it = b.rank.find(syms[i] + " " + syms[i + 1]);
      if (it != b.rank.end() && it->second < best) best = it->second, at = i;
    }
    if (best == INT32_MAX) break;
    syms[at] += syms[at + 1];
    syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  std::vector<int32_t> ids;
  for (const auto& s : syms) ids.push_back(b.vocab.at(s));
  return ids;
}

class Bpe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::gpt2_tokenizer_dir() / "vocab.json"))
      GTEST_SKIP() << test::gpt2_tokenizer_dir() << " is missing";
  }
};

}  // namespace

TEST_F(Bpe, EqualsTheReferenceOnRandomPieces) {
  const Gpt2Bpe& b = gpt2_bpe();
  const text::BpeModel model(b.vocab, b.merges);
  std::mt19937 rng(14);
  // Few letters give long merge chains; all 256 bytes give the byte tokens.
  const std::vector<std::string> alphabets = {"ab", "aeiou", "abcdefghijklmnopqrstuvwxyz", "ing er the", "0123456789"};
  for (int trial = 0; trial < 300; ++trial) {
    const size_t len = 1 + rng() % (trial < 280 ? 64 : 1500);
    std::string s;
    if (trial % 10 == 9) {
      for (size_t i = 0; i < len; ++i) s += static_cast<char>(rng() % 256);
    } else {
      const std::string& a = alphabets[trial % alphabets.size()];
      for (size_t i = 0; i < len; ++i) s += a[rng() % a.size()];
    }
    std::vector<int32_t> got;
    model.encode_word(s, got);
    ASSERT_EQ(got, bpe_reference(s, b)) << "piece of " << s.size() << " bytes, trial " << trial;
  }
}

TEST_F(Bpe, MegabytePieceTakesSecondsNotHours) {
  const Tokenizer tok = Tokenizer::load(test::gpt2_tokenizer_dir());
  std::mt19937 rng(3);
  std::string word;
  for (int i = 0; i < 3'000'000; ++i) word += static_cast<char>('a' + rng() % 26);  // one pre-token: no spaces
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(word);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 60.0) << "3 MB piece";  // about 1 s on one core; quadratic would be hours
  EXPECT_GT(ids.size(), word.size() / 4);
  EXPECT_EQ(tok.decode(ids), word);
}
