// The tokenizer against Hugging Face GPT2TokenizerFast, through the fixtures
// tools/make_tokenizer_fixtures.py writes: every WikiText-2 test line, the
// whole file, every AG News test text, stress cases, HF decode of random ids,
// and the pre-tokenizer's class of every code point.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "support/test_env.h"
#include "text/pretokenizer.h"
#include "text/tokenizer.h"
#include "text/tokenizer_bench.h"
#include "text/utf8.h"

namespace fs = std::filesystem;
using gpt2q::Tokenizer;

namespace {

fs::path fixture(const std::string& name) { return gpt2q::test::fixtures_dir() / "tokenizer" / name; }

// A safetensors file read just far enough for these fixtures: 1-D U8, U16
// and U32 tensors, widened to int64.
std::map<std::string, std::vector<int64_t>> read_safetensors(const fs::path& path) {
  const std::string bytes = gpt2q::read_file(path);
  uint64_t header_len = 0;
  if (bytes.size() < 8) throw std::runtime_error(path.string() + ": too short");
  std::memcpy(&header_len, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, header_len));
  const char* data = bytes.data() + 8 + header_len;
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& [name, t] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string dtype = t["dtype"];
    const size_t begin = t["data_offsets"][0], end = t["data_offsets"][1];
    const size_t width = dtype == "U8" ? 1 : dtype == "U16" ? 2 : dtype == "U32" ? 4 : 0;
    if (width == 0) throw std::runtime_error(path.string() + ": unexpected dtype " + dtype);
    auto& v = out[name];
    for (size_t off = begin; off < end; off += width) {
      uint32_t x = 0;
      std::memcpy(&x, data + off, width);  // little-endian host
      v.push_back(x);
    }
  }
  return out;
}

struct Sequences {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::string> texts;  // only in sets that carry `text`
};

Sequences read_sequences(const std::string& name) {
  auto t = read_safetensors(fixture(name));
  Sequences s;
  const auto &ids = t.at("ids"), &off = t.at("offsets");
  for (size_t i = 0; i + 1 < off.size(); ++i) s.ids.emplace_back(ids.begin() + off[i], ids.begin() + off[i + 1]);
  if (t.count("text")) {
    const auto &text = t.at("text"), &toff = t.at("text_offsets");
    for (size_t i = 0; i + 1 < toff.size(); ++i) {
      std::string str;
      for (auto j = toff[i]; j < toff[i + 1]; ++j) str.push_back(static_cast<char>(text[j]));
      s.texts.push_back(std::move(str));
    }
  }
  return s;
}

std::string sha256_of(const fs::path& path) {
  std::string cmd = "sha256sum '" + path.string() + "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  char buf[65] = {};
  size_t n = std::fread(buf, 1, 64, p);
  pclose(p);
  return n == 64 ? std::string(buf, 64) : std::string();
}

// The fixtures hold HF's ids for particular source files; other bytes would
// give other ids, which is not a tokenizer bug.
std::string source_mismatch(const std::string& rel) {
  const fs::path path = gpt2q::test::data_dir() / rel;
  if (!fs::exists(path)) return path.string() + " is missing";
  auto meta = nlohmann::json::parse(gpt2q::read_file(fixture("meta.json")));
  const std::string want = meta["sources"].at(rel);
  const std::string got = sha256_of(path);
  if (!got.empty() && got != want)
    return path.string() + " has sha256 " + got + ", the fixtures were made from " + want;
  return {};
}

#define SKIP_UNLESS_SOURCE(rel)                                    \
  do {                                                             \
    if (auto why = source_mismatch(rel); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

const Tokenizer& gpt2() {
  static const Tokenizer tok = Tokenizer::load(gpt2q::test::data_dir() / "gpt2-tokenizer");
  return tok;
}

class HfFixtures : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_UNLESS_SOURCE("gpt2-tokenizer/vocab.json");
    SKIP_UNLESS_SOURCE("gpt2-tokenizer/merges.txt");
  }
};

std::string wiki_text() { return gpt2q::read_file(gpt2q::test::data_dir() / "wikitext-2-raw/wiki.test.raw"); }

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// AG News test.csv: no header, every field quoted, "" escapes a quote; a
// quoted field may hold newlines. Just enough RFC 4180 for this file.
std::vector<std::vector<std::string>> read_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1, std::vector<std::string>(1));
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        rows.back().back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        rows.back().back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().emplace_back();
    } else if (c == '\n') {
      rows.emplace_back(1);
    } else if (c != '\r') {
      rows.back().back() += c;
    }
  }
  if (rows.back().size() == 1 && rows.back()[0].empty()) rows.pop_back();
  return rows;
}

std::vector<std::string> agnews_texts() {
  auto rows = read_csv(gpt2q::read_file(gpt2q::test::data_dir() / "ag_news/test.csv"));
  std::vector<std::string> texts;
  for (auto& r : rows) {
    EXPECT_EQ(r.size(), 3u);
    if (r.size() == 3) texts.push_back(r[1] + " " + r[2]);
  }
  return texts;
}

// Compares every text's ids and reports the first few differences.
void expect_encodes(const std::vector<std::string>& texts, const Sequences& want, const Tokenizer& tok) {
  ASSERT_EQ(texts.size(), want.ids.size());
  int failures = 0;
  for (size_t i = 0; i < texts.size() && failures < 5; ++i) {
    auto got = tok.encode(texts[i]);
    if (got != want.ids[i]) {
      ++failures;
      ADD_FAILURE() << "text " << i << " (" << texts[i].substr(0, 80) << ") encodes differently from HF";
    }
    if (tok.decode(got) != texts[i]) {
      ++failures;
      ADD_FAILURE() << "text " << i << " does not survive decode(encode(x))";
    }
  }
}

TEST_F(HfFixtures, EveryWikiTextLine) {
  SKIP_UNLESS_SOURCE("wikitext-2-raw/wiki.test.raw");
  auto lines = split_lines(wiki_text());
  EXPECT_EQ(lines.size(), 4358u);
  expect_encodes(lines, read_sequences("wiki_lines.safetensors"), gpt2());
}

TEST_F(HfFixtures, WholeWikiTextFile) {
  SKIP_UNLESS_SOURCE("wikitext-2-raw/wiki.test.raw");
  expect_encodes({wiki_text()}, read_sequences("wiki_whole.safetensors"), gpt2());
}

TEST_F(HfFixtures, EveryAgNewsText) {
  SKIP_UNLESS_SOURCE("ag_news/test.csv");
  auto texts = agnews_texts();
  EXPECT_EQ(texts.size(), 7600u);
  expect_encodes(texts, read_sequences("agnews.safetensors"), gpt2());
}

TEST_F(HfFixtures, EdgeCases) {
  auto set = read_sequences("edge_cases.safetensors");
  expect_encodes(set.texts, set, gpt2());
}

TEST_F(HfFixtures, SameIdsFromEveryThread) {
  SKIP_UNLESS_SOURCE("ag_news/test.csv");
  auto texts = agnews_texts();
  auto want = read_sequences("agnews.safetensors");
  ASSERT_EQ(texts.size(), want.ids.size());
  // A fresh tokenizer, so that every thread fills its own cache concurrently.
  const Tokenizer tok = Tokenizer::load(gpt2q::test::data_dir() / "gpt2-tokenizer");
  std::vector<size_t> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < mismatches.size(); ++t)
    threads.emplace_back([&, t] {
      for (size_t k = 0; k < texts.size(); ++k) {
        size_t i = (k + t * texts.size() / 4) % texts.size();  // each thread starts elsewhere
        if (tok.encode(texts[i]) != want.ids[i]) ++mismatches[t];
      }
    });
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < mismatches.size(); ++t) EXPECT_EQ(mismatches[t], 0u) << "thread " << t;
}

TEST_F(HfFixtures, DecodeMatchesHfOnRandomIds) {
  auto set = read_sequences("decode.safetensors");
  ASSERT_EQ(set.ids.size(), set.texts.size());
  int failures = 0;
  for (size_t i = 0; i < set.ids.size() && failures < 5; ++i)
    if (gpt2().decode(set.ids[i]) != set.texts[i]) {
      ++failures;
      ADD_FAILURE() << "sequence " << i << " decodes differently from HF";
    }
}

// The one place PCRE2 and HF's oniguruma could disagree is what counts as a
// letter, a number or white space; check every code point.
TEST(PreTokenizer, ClassifiesEveryCodePointLikeHf) {
  auto t = read_safetensors(fixture("codepoint_classes.safetensors"));
  const auto &starts = t.at("run_starts"), &classes = t.at("run_classes");
  ASSERT_EQ(starts.size(), classes.size());
  gpt2q::text::PreTokenizer pre;
  const char* probes[4] = {"a", "1", "\t", "!"};  // a code point joins the probe's piece iff same class
  size_t run = 0;
  int failures = 0;
  for (char32_t cp = 0; cp < 0x110000 && failures < 10; ++cp) {
    while (run + 1 < starts.size() && static_cast<char32_t>(starts[run + 1]) <= cp) ++run;
    const int want = static_cast<int>(classes[run]);
    if (want == 255) continue;  // surrogates
    std::string s;
    int got = -1, hits = 0;
    for (int k = 0; k < 4; ++k) {
      s = probes[k];
      gpt2q::text::append_utf8(s, cp);
      int pieces = 0;
      pre.split(s, [&](std::string_view) { ++pieces; });
      if (pieces == 1) got = k, ++hits;
    }
    if (hits != 1 || got != want) {
      ++failures;
      ADD_FAILURE() << "U+" << std::hex << static_cast<uint32_t>(cp) << ": HF class " << want << ", ours " << got;
    }
  }
}

TEST_F(HfFixtures, ThroughputOnWikiText) {
  SKIP_UNLESS_SOURCE("wikitext-2-raw/wiki.test.raw");
  const std::string text = wiki_text();
  const Tokenizer tok = Tokenizer::load(gpt2q::test::data_dir() / "gpt2-tokenizer");
  const double mb_s = gpt2q::tokenizer_throughput_mb_s(tok, text, 3);
  std::printf("tokenizer: %.1f MB/s on wiki.test.raw (%zu bytes, one thread, warm cache)\n", mb_s, text.size());
  RecordProperty("wikitext_mb_s", std::to_string(mb_s));
  EXPECT_GT(mb_s, 0.0);
}

}  // namespace
