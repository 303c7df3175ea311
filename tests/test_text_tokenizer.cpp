// GPT-2 tokenizer: llama.cpp's GPT-2 test vectors, the three file layouts,
// <|endoftext|>, UTF-8 checks, and errors for bad files. The comparisons with
// HF on whole corpora are in test_text_tokenizer_hf.cpp.
#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/file_util.h"
#include "core/utf8.h"
#include "support/test_env.h"
#include "text/tokenizer.h"
#include "text/tokenizer_bench.h"
#include "text/word_cache.h"

namespace fs = std::filesystem;
using gpt2q::Tokenizer;

namespace {

using namespace gpt2q::test;

// Fresh temp directories, removed when the test program exits.
fs::path scratch(const std::string& tag) {
  static struct Dirs {
    std::vector<fs::path> all;
    ~Dirs() {
      std::error_code ec;
      for (const auto& d : all) fs::remove_all(d, ec);
    }
  } dirs;
  dirs.all.push_back(gpt2q::test::temp_dir(tag));
  return dirs.all.back();
}

const Tokenizer& gpt2() {
  static const Tokenizer tok = Tokenizer::load(gpt2_tokenizer_dir());
  return tok;
}

class WithTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(gpt2_tokenizer_dir() / "vocab.json")) GTEST_SKIP() << gpt2_tokenizer_dir() << " is missing";
  }
};

struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};

// ggml-vocab-gpt-2.gguf.inp holds the inputs, each followed by
// "\n__ggml_vocab_test__\n"; line i of the .out file holds input i's ids.
// (Checked against HF GPT2TokenizerFast: all 46 agree.)
std::vector<Vector> llama_cpp_vectors() {
  const fs::path dir = gpt2_tokenizer_dir() / "llama.cpp-test-vectors";
  const std::string inp = gpt2q::read_file(dir / "ggml-vocab-gpt-2.gguf.inp");
  const std::string out = gpt2q::read_file(dir / "ggml-vocab-gpt-2.gguf.out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> v;
  for (size_t pos = 0; pos < inp.size();) {
    size_t end = inp.find(sep, pos);
    if (end == std::string::npos) throw std::runtime_error("unterminated input in .inp");
    v.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  for (size_t i = 0; std::getline(lines, line); ++i) {
    if (i >= v.size()) throw std::runtime_error(".out has more lines than .inp has inputs");
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) v[i].ids.push_back(id);
  }
  return v;
}

TEST_F(WithTokenizer, LlamaCppVectors) {
  auto vectors = llama_cpp_vectors();
  ASSERT_EQ(vectors.size(), 46u);
  for (const auto& v : vectors) {
    EXPECT_EQ(gpt2().encode(v.text), v.ids) << "input: '" << v.text << "'";
    EXPECT_EQ(gpt2().decode(v.ids), v.text);
  }
}

TEST_F(WithTokenizer, BasicProperties) {
  EXPECT_EQ(gpt2().eos_id(), 50256);
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_TRUE(gpt2().encode("").empty());
  EXPECT_EQ(gpt2().decode({}), "");
  EXPECT_TRUE(Tokenizer::present(gpt2_tokenizer_dir()));
  EXPECT_TRUE(Tokenizer::present(fake_gpt2_dir()));
  EXPECT_FALSE(Tokenizer::present(scratch("tok_empty")));
}

// A directory holding copies of just `names` from `from`.
fs::path layout(const fs::path& from, std::initializer_list<const char*> names) {
  fs::path dir = scratch("tok_layout");
  for (const char* n : names) fs::copy_file(from / n, dir / n);
  return dir;
}

TEST_F(WithTokenizer, ThreeLayoutsGiveTheSameIds) {
  const Tokenizer openai = Tokenizer::load(layout(gpt2_tokenizer_dir(), {"encoder.json", "vocab.bpe"}));
  const Tokenizer hf_json = Tokenizer::load(layout(fake_gpt2_dir(), {"tokenizer.json"}));
  const Tokenizer direct = Tokenizer::from_tokenizer_json(fake_gpt2_dir() / "tokenizer.json");
  std::vector<std::string> texts;
  for (auto& v : llama_cpp_vectors()) texts.push_back(v.text);
  const fs::path wiki = gpt2q::test::data_dir() / "wikitext-2-raw" / "wiki.test.raw";
  if (fs::exists(wiki)) texts.push_back(gpt2q::read_file(wiki));
  texts.push_back("a<|endoftext|>b <|endoftext|><|endoftext|>");
  for (const Tokenizer* t : {&openai, &hf_json, &direct}) {
    EXPECT_EQ(t->eos_id(), gpt2().eos_id());
    EXPECT_EQ(t->vocab_size(), gpt2().vocab_size());
    for (const auto& text : texts) {
      auto ids = gpt2().encode(text);
      EXPECT_EQ(t->encode(text), ids) << text.substr(0, 60);
      EXPECT_EQ(t->decode(ids), text);
    }
  }
}

TEST_F(WithTokenizer, EndOfTextIsOneTokenWhereverItAppears) {
  const int32_t eos = gpt2().eos_id();
  EXPECT_EQ(gpt2().encode("<|endoftext|>"), std::vector<int32_t>{eos});
  EXPECT_EQ(gpt2().decode(std::vector<int32_t>{eos}), "<|endoftext|>");
  // The text is split on it first: each side is encoded on its own.
  const std::vector<std::string> sides = {"", "a", " ", "Hello world", "x ", " 's", "\n\n", "<|endoftext"};
  for (const auto& left : sides)
    for (const auto& right : sides) {
      auto want = gpt2().encode(left);
      want.push_back(eos);
      auto r = gpt2().encode(right);
      want.insert(want.end(), r.begin(), r.end());
      EXPECT_EQ(gpt2().encode(left + "<|endoftext|>" + right), want) << "'" << left << "' + '" << right << "'";
    }
  // Anything short of the whole string is ordinary text.
  for (const char* s : {"<|endoftext|", "|endoftext|>", "<|endoftext |>", "<|ENDOFTEXT|>"})
    for (int32_t id : gpt2().encode(s)) EXPECT_NE(id, eos) << s;
}

TEST_F(WithTokenizer, InvalidUtf8IsAnErrorNamingSourceAndByte) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"ab\xff", 2},         {"\x80", 0},        {"ok \xc3", 3},         {"\xc0\x80", 0},
      {"xx\xed\xa0\x80", 2}, {"\xf4\x90\x80\x80", 0}, {"é\xe2\x82", 2}, {"\xf0\x9f\x98", 0}};
  for (const auto& [text, at] : cases) {
    size_t bad = 12345;
    EXPECT_FALSE(gpt2q::valid_utf8(text, &bad));
    EXPECT_EQ(bad, at);
    try {
      gpt2().encode(text, "line 7");
      ADD_FAILURE() << "no error";
    } catch (const gpt2q::Error& e) {
      EXPECT_EQ(std::string(e.what()), "line 7: invalid UTF-8 at byte " + std::to_string(at));
    }
  }
  EXPECT_TRUE(gpt2q::valid_utf8("é€😀 \x7f"));
}

// Cross-check against the independent validator in core on random bytes.
TEST(Utf8, AgreesWithCoreValidator) {
  std::mt19937_64 rng(7);
  const unsigned char pool[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2,
                                0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff};
  for (int n = 0; n < 200000; ++n) {
    std::string s(rng() % 12, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 4 == 0 ? 0x61 : pool[rng() % sizeof(pool)]);
    size_t bad = 0;
    const bool ok = gpt2q::valid_utf8(s, &bad);
    const size_t core_bad = gpt2q::first_invalid_utf8(s);
    ASSERT_EQ(ok, core_bad == gpt2q::kUtf8Valid);
    if (!ok) {
      ASSERT_EQ(bad, core_bad);
    }
  }
}

TEST_F(WithTokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  for (int32_t id : {-1, 50257, 1 << 30}) EXPECT_THROW(gpt2().decode(std::vector<int32_t>{id}), gpt2q::Error);
}

// The per-thread word cache belongs to one tokenizer at a time; alternating
// between two must not serve one's results to the other.
TEST_F(WithTokenizer, CacheIsPerTokenizer) {
  fs::path dir = scratch("tok_swap");
  // Same vocabulary, but no merges: every byte stays its own token.
  fs::copy_file(gpt2_tokenizer_dir() / "vocab.json", dir / "vocab.json");
  gpt2q::write_file_atomic(dir / "merges.txt", "#version: 0.2\n");
  const Tokenizer bytes_only = Tokenizer::load(dir);
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(gpt2().encode("Hello world").size(), 2u);
    EXPECT_EQ(bytes_only.encode("Hello world").size(), 11u);
  }
}

// Through growth and the reset when full, the cache answers right or not at all.
TEST(WordCache, GrowsResetsAndNeverAnswersWrong) {
  gpt2q::text::WordCache cache;
  auto ids_of = [](size_t k) { return std::vector<int32_t>{static_cast<int32_t>(k), static_cast<int32_t>(k % 7)}; };
  auto word = [](size_t k) {
    std::string w = std::to_string(k);
    w += 'w';
    return w;
  };
  const size_t n = gpt2q::text::WordCache::kMaxWords + 1000;
  size_t found_after_reset = 0;
  for (size_t k = 0; k < n; ++k) {
    const std::string w = word(k);
    cache.insert(w, gpt2q::text::WordCache::hash(w), ids_of(k));
    std::span<const int32_t> got;
    ASSERT_TRUE(cache.find(w, gpt2q::text::WordCache::hash(w), &got)) << k;
    ASSERT_EQ(std::vector<int32_t>(got.begin(), got.end()), ids_of(k));
  }
  EXPECT_LE(cache.size(), gpt2q::text::WordCache::kMaxWords);
  for (size_t k = 0; k < n; ++k) {
    const std::string w = word(k);
    std::span<const int32_t> got;
    if (cache.find(w, gpt2q::text::WordCache::hash(w), &got)) {
      ++found_after_reset;
      ASSERT_EQ(std::vector<int32_t>(got.begin(), got.end()), ids_of(k));
    }
  }
  EXPECT_EQ(found_after_reset, cache.size());
  const std::string long_word(gpt2q::text::WordCache::kMaxWordBytes + 1, 'x');
  cache.insert(long_word, gpt2q::text::WordCache::hash(long_word), ids_of(1));
  std::span<const int32_t> got;
  EXPECT_FALSE(cache.find(long_word, gpt2q::text::WordCache::hash(long_word), &got));
}

TEST_F(WithTokenizer, ConcurrentEncodeOfFreshTokenizer) {
  const Tokenizer tok = Tokenizer::load(gpt2_tokenizer_dir());
  auto vectors = llama_cpp_vectors();
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (const auto& v : vectors)
          if (tok.encode(v.text) != v.ids) ++bad[t];
    });
  for (auto& th : threads) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

// Bad files: one gpt2q::Error whose message names the file and the problem.
void expect_load_error(const fs::path& dir, const std::string& file_part, const std::string& problem_part) {
  try {
    Tokenizer::load(dir);
    ADD_FAILURE() << "no error for " << dir;
  } catch (const gpt2q::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(file_part), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem_part), std::string::npos) << msg;
  }
}

fs::path dir_with(std::initializer_list<std::pair<const char*, std::string>> files) {
  fs::path dir = scratch("tok_bad");
  for (const auto& [name, contents] : files) gpt2q::write_file_atomic(dir / name, contents);
  return dir;
}

TEST(TokenizerFiles, MissingFiles) {
  expect_load_error("/nonexistent/gpt2", "/nonexistent/gpt2", "no such directory");
  fs::path empty = scratch("tok_none");
  expect_load_error(empty, empty.string(), "no tokenizer files");
  expect_load_error(dir_with({{"vocab.json", "{}"}}), "tok_bad", "vocab.json without merges.txt");
  expect_load_error(dir_with({{"vocab.bpe", ""}}), "tok_bad", "vocab.bpe without encoder.json");
  EXPECT_THROW(Tokenizer::from_vocab_merges("/nonexistent/vocab.json", "/nonexistent/merges.txt"), gpt2q::Error);
}

TEST(TokenizerFiles, CorruptVocabAndMerges) {
  const std::string merges = "#version: 0.2\nh e\n";
  const std::string vocab = R"({"h": 0, "e": 1, "he": 2, "<|endoftext|>": 3})";
  ASSERT_NO_THROW(Tokenizer::load(dir_with({{"vocab.json", vocab}, {"merges.txt", merges}})));
  expect_load_error(dir_with({{"vocab.json", "{\"h\": 0,"}, {"merges.txt", merges}}), "vocab.json",
                    "invalid JSON");
  expect_load_error(dir_with({{"vocab.json", "[1, 2]"}, {"merges.txt", merges}}), "vocab.json", "JSON object");
  expect_load_error(dir_with({{"vocab.json", R"({"h": "x"})"}, {"merges.txt", merges}}), "vocab.json",
                    "token 'h'");
  expect_load_error(dir_with({{"vocab.json", R"({"h": 0, "e": 0})"}, {"merges.txt", merges}}), "vocab.json",
                    "id 0 is used by both");
  expect_load_error(dir_with({{"vocab.json", R"({"h": 0, "e": 1, "he": 2, "<|endoftext|>": 2000000000})"},
                              {"merges.txt", merges}}),
                    "vocab.json", "token ids go up to 2000000000");
  expect_load_error(dir_with({{"vocab.json", R"({"h": 0, "e": 1, "he": 2})"}, {"merges.txt", merges}}),
                    "vocab.json", "no <|endoftext|> token");
  expect_load_error(dir_with({{"vocab.json", vocab}, {"merges.txt", "#version: 0.2\nh e\nhe\n"}}), "merges.txt:3",
                    "two tokens");
  expect_load_error(dir_with({{"vocab.json", vocab}, {"merges.txt", "h x\n"}}), "merges.txt:1", "not in the vocabulary");
  expect_load_error(dir_with({{"vocab.json", vocab}, {"merges.txt", "e h\n"}}), "merges.txt:1", "makes 'eh'");
  expect_load_error(dir_with({{"vocab.json", vocab}, {"merges.txt", "h \xff\n"}}), "merges.txt", "invalid UTF-8");
  expect_load_error(dir_with({{"encoder.json", "nope"}, {"vocab.bpe", merges}}), "encoder.json", "invalid JSON");
}

TEST(TokenizerFiles, CorruptTokenizerJson) {
  const std::string model = R"("model": {"type": "BPE", "vocab": {"h": 0, "e": 1, "he": 2}, "merges": ["h e"]})";
  const std::string pre = R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false})";
  const std::string eot = R"("added_tokens": [{"id": 3, "content": "<|endoftext|>"}])";
  auto json_dir = [](const std::string& body) { return dir_with({{"tokenizer.json", "{" + body + "}"}}); };
  const Tokenizer ok = Tokenizer::load(json_dir(model + "," + pre + "," + eot));
  EXPECT_EQ(ok.encode("hhe<|endoftext|>"), (std::vector<int32_t>{0, 2, 3}));
  EXPECT_EQ(Tokenizer::load(json_dir(R"("model": {"vocab": {"h": 0, "e": 1, "he": 2}, "merges": [["h", "e"]]},)" +
                                     pre + "," + eot))
                .encode("he"),
            std::vector<int32_t>{2});
  expect_load_error(dir_with({{"tokenizer.json", "{\"model\": "}}), "tokenizer.json", "invalid JSON");
  expect_load_error(json_dir(pre + "," + eot), "tokenizer.json", "no \"model\" object");
  expect_load_error(json_dir(model + "," + eot), "tokenizer.json", "pre_tokenizer must be ByteLevel");
  expect_load_error(json_dir(model + "," + pre), "tokenizer.json", "no <|endoftext|> token");
  expect_load_error(json_dir(model + "," + pre + "," + eot + R"(, "normalizer": {"type": "NFC"})"), "tokenizer.json",
                    "normalizer");
  expect_load_error(json_dir(R"("model": {"type": "WordPiece", "vocab": {}},)" + pre), "tokenizer.json", "not BPE");
  expect_load_error(json_dir(R"("model": {"vocab": {"h": 0}, "merges": ["h"]},)" + pre + "," + eot),
                    "model.merges[0]", "expected");
  expect_load_error(json_dir(model + "," + pre + R"(, "added_tokens": [{"id": "x", "content": "<|endoftext|>"}])"),
                    "tokenizer.json", "integer id");
}

TEST_F(WithTokenizer, ThroughputArguments) {
  EXPECT_THROW(gpt2q::tokenizer_throughput_mb_s(gpt2(), "text", 0), gpt2q::Error);
  EXPECT_GT(gpt2q::tokenizer_throughput_mb_s(gpt2(), "Hello world, hello tokenizer.", 2), 0.0);
}

}  // namespace
