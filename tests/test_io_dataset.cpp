// Datasets: CSV parsing against Python's csv module, the whole AG News test
// split against a Python-made digest, generic CSV / JSONL, errors with file
// and line, and the seeded stratified split against an independent Python
// implementation (tools/make_io_fixtures.py).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "io/dataset.h"
#include "support/test_env.h"

using namespace gpt2q;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using gpt2q::test::ag_news_test_csv;

fs::path fixtures() { return test::fixtures_dir() / "io"; }

uint64_t fnv1a64(std::string_view s, uint64_t h = 0xCBF29CE484222325ull) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

std::string load_error(const fs::path& p, DataFormat f) {
  try {
    load_dataset(p, f);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string csv_error(std::string_view text) {
  try {
    parse_csv(text, "in.csv");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_split_summary(const Split& s, const json& want) {
  EXPECT_EQ(s.first.size(), want["first_count"].get<size_t>());
  EXPECT_EQ(s.second.size(), want["second_count"].get<size_t>());
  std::string joined;
  for (size_t i = 0; i < s.second.size(); ++i) {
    if (i) joined += ',';
    joined += std::to_string(s.second[i]);
  }
  EXPECT_EQ(std::to_string(fnv1a64(joined)), want["second_fnv1a64"].get<std::string>());
  auto head = want["second_head"].get<std::vector<size_t>>();
  EXPECT_EQ(std::vector<size_t>(s.second.begin(), s.second.begin() + static_cast<std::ptrdiff_t>(head.size())), head);
}

}  // namespace

TEST(Csv, MatchesPythonCsvModule) {
  auto records = parse_csv(read_file(fixtures() / "tricky.csv"), "tricky.csv");
  auto want = json::parse(read_file(fixtures() / "tricky.expected.json"))["records"];
  ASSERT_EQ(records.size(), want.size());
  for (size_t i = 0; i < records.size(); ++i)
    EXPECT_EQ(records[i].fields, want[i].get<std::vector<std::string>>()) << "record " << i;
}

TEST(Csv, RecordsCarryTheLineTheyStartOn) {
  auto r = parse_csv("a,b\n\"x\ny\",z\r\n\r\n\nlast,\"q\r\nq\"\rlone", "in.csv");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].line, 1);
  EXPECT_EQ(r[1].line, 2);
  EXPECT_EQ(r[1].fields, (std::vector<std::string>{"x\ny", "z"}));
  EXPECT_EQ(r[2].line, 6);
  EXPECT_EQ(r[2].fields, (std::vector<std::string>{"last", "q\r\nq"}));
  EXPECT_EQ(r[3].line, 8);  // the lone \r after "q" ends line 7
  EXPECT_EQ(r[3].fields, (std::vector<std::string>{"lone"}));
  EXPECT_TRUE(parse_csv("", "in.csv").empty());
}

TEST(Csv, UnterminatedQuoteNamesTheLineItOpened) {
  EXPECT_EQ(csv_error("a,b\n\"open,\nmore\n"), "in.csv:2: unterminated quoted field");
  EXPECT_EQ(csv_error("\"\"\"\n"), "in.csv:1: unterminated quoted field");
}

// The whole AG News test split, compared with Python's csv module through a
// digest of every (label, text) and of two seeded splits.
TEST(AgNews, WholeTestSplitMatchesPythonCsv) {
  auto want = json::parse(read_file(fixtures() / "ag_news.expected.json"));
  ASSERT_EQ(guess_data_format(ag_news_test_csv()), DataFormat::AgNews);
  auto d = load_dataset(ag_news_test_csv(), DataFormat::AgNews);
  ASSERT_EQ(d.rows.size(), want["rows"].get<size_t>());
  EXPECT_EQ(d.num_labels(), 4);
  std::vector<int> per_class(4, 0);
  uint64_t h = 0xCBF29CE484222325ull;
  size_t bytes = 0;
  for (const auto& r : d.rows) {
    ++per_class.at(r.label);
    h = fnv1a64(std::to_string(r.label) + "\t" + r.text + "\n", h);
    bytes += r.text.size();
  }
  EXPECT_EQ(per_class, want["per_class"].get<std::vector<int>>());
  EXPECT_EQ(bytes, want["text_bytes"].get<size_t>());
  EXPECT_EQ(std::to_string(h), want["fnv1a64"].get<std::string>());
  for (const auto& [idx, text] : want["samples"].items()) EXPECT_EQ(d.rows.at(std::stoul(idx)).text, text) << idx;
  for (const auto& s : want["splits"]) {
    SCOPED_TRACE(s.dump());
    check_split_summary(stratified_split(d, s["fraction"].get<double>(), s["seed"].get<uint64_t>()), s);
  }
}

TEST(AgNews, BadRowsNameFileAndLine) {
  auto tmp = test::temp_dir("ds_ag");
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"\"1\",\"t\",\"d\"\n\"2\",\"t\"\n", ":2: expected 3 fields (label, title, description), got 2"},
      {"\"1\",\"t\",\"d\"\n\n\"5\",\"t\",\"d\"\n", ":3: label '5' is not 1, 2, 3 or 4"},
      {"\"0\",\"t\",\"d\"\n", ":1: label '0' is not 1, 2, 3 or 4"},
      {"\"x\",\"t\",\"d\"\n", ":1: label 'x' is not 1, 2, 3 or 4"},
      {"\"1\",\"t\",\"d\"\n\"2\",\"t\",\"multi\nline\n\xff\"\n", ":4: invalid UTF-8"},
      {"\"1\",\"t\",\"d\n", ":1: unterminated quoted field"},
      {"", ": empty file"},
      {" \r\n\n", ": empty file"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    write_file_atomic(tmp / "a.csv", c.text);
    EXPECT_EQ(load_error(tmp / "a.csv", DataFormat::AgNews), (tmp / "a.csv").string() + c.expect);
  }
  fs::remove_all(tmp);
}

TEST(GenericCsv, ReadsTextAndLabelColumnsInAnyOrder) {
  auto d = load_dataset(fixtures() / "tricky.csv", DataFormat::Csv);
  auto want = json::parse(read_file(fixtures() / "tricky.expected.json"))["records"];
  ASSERT_EQ(d.rows.size(), want.size() - 1);
  for (size_t i = 0; i < d.rows.size(); ++i) {
    EXPECT_EQ(d.rows[i].text, want[i + 1][0].get<std::string>());
    EXPECT_EQ(d.rows[i].label, std::stoi(want[i + 1][1].get<std::string>()));
  }
  EXPECT_EQ(d.num_labels(), 5);
  EXPECT_EQ(guess_data_format(fixtures() / "tricky.csv"), DataFormat::Csv);

  auto tmp = test::temp_dir("ds_csv");
  write_file_atomic(tmp / "b.csv", "\xEF\xBB\xBFid,label,text\r\n1,2,hello\r\n2,0,\"a,b\"\r\n");
  EXPECT_EQ(guess_data_format(tmp / "b.csv"), DataFormat::Csv);
  d = load_dataset(tmp / "b.csv", DataFormat::Csv);
  ASSERT_EQ(d.rows.size(), 2u);
  EXPECT_EQ(d.rows[0].text, "hello");
  EXPECT_EQ(d.rows[0].label, 2);
  EXPECT_EQ(d.rows[1].text, "a,b");
  fs::remove_all(tmp);
}

TEST(GenericCsv, BadFilesNameFileAndLine) {
  auto tmp = test::temp_dir("ds_csv_bad");
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"text,labels\na,1\n", ":1: header has no 'label' column"},
      {"label\n1\n", ":1: header has no 'text' column"},
      {"text,label,text\na,1,b\n", ":1: header has two 'text' columns"},
      {"text,label\na,1\nb\n", ":3: expected 2 fields as in the header, got 1"},
      {"text,label\na,-1\n", ":2: label '-1' is not a non-negative integer"},
      {"text,label\na,1.0\n", ":2: label '1.0' is not a non-negative integer"},
      {"text,label\na,\n", ":2: label '' is not a non-negative integer"},
      {"text,label\n", ": no rows after the header"},
      {"text,label\n\xc0\x80,1\n", ":2: invalid UTF-8"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    write_file_atomic(tmp / "c.csv", c.text);
    EXPECT_EQ(load_error(tmp / "c.csv", DataFormat::Csv), (tmp / "c.csv").string() + c.expect);
  }
  fs::remove_all(tmp);
}

TEST(Jsonl, ReadsObjectsAndSkipsBlankLines) {
  auto tmp = test::temp_dir("ds_jsonl");
  write_file_atomic(tmp / "d.jsonl",
                    "{\"text\": \"caf\\u00e9 \\\"q\\\"\", \"label\": 3, \"id\": 9}\n\n   \r\n"
                    "{\"label\": 0, \"text\": \"line\\nbreak\"}");
  EXPECT_EQ(guess_data_format(tmp / "d.jsonl"), DataFormat::Jsonl);
  auto d = load_dataset(tmp / "d.jsonl", DataFormat::Jsonl);
  ASSERT_EQ(d.rows.size(), 2u);
  EXPECT_EQ(d.rows[0].text, "café \"q\"");
  EXPECT_EQ(d.rows[0].label, 3);
  EXPECT_EQ(d.rows[1].text, "line\nbreak");
  EXPECT_EQ(d.num_labels(), 4);

  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"a\"\n", ":2: invalid JSON"},
      {"\n[1]\n", ":2: expected a JSON object"},
      {"{\"label\": 1}\n", ":1: 'text' must be a string"},
      {"{\"text\": 5, \"label\": 1}\n", ":1: 'text' must be a string"},
      {"{\"text\": \"a\"}\n", ":1: 'label' must be a non-negative integer"},
      {"{\"text\": \"a\", \"label\": -1}\n", ":1: 'label' must be a non-negative integer"},
      {"{\"text\": \"a\", \"label\": 1.5}\n", ":1: 'label' must be a non-negative integer"},
      {"{\"text\": \"a\", \"label\": \"1\"}\n", ":1: 'label' must be a non-negative integer"},
      {"{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"\xed\xa0\x80\", \"label\": 1}\n", ":3: invalid UTF-8"},
      {"\n\n", ": empty file"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    write_file_atomic(tmp / "e.jsonl", c.text);
    std::string err = load_error(tmp / "e.jsonl", DataFormat::Jsonl);
    EXPECT_EQ(err.rfind((tmp / "e.jsonl").string() + c.expect, 0), 0u) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
  EXPECT_NE(load_error(tmp / "missing.jsonl", DataFormat::Jsonl).find("missing.jsonl: no such file"),
            std::string::npos);
  fs::remove_all(tmp);
}

TEST(DataFormat, NamesAndGuesses) {
  EXPECT_EQ(parse_data_format("agnews"), DataFormat::AgNews);
  EXPECT_EQ(parse_data_format("csv"), DataFormat::Csv);
  EXPECT_EQ(parse_data_format("jsonl"), DataFormat::Jsonl);
  EXPECT_THROW(parse_data_format("parquet"), Error);
  EXPECT_EQ(guess_data_format("no/such/file.csv"), DataFormat::AgNews);
}

// mt19937_64 is specified by the C++ standard; the Python fixture script
// re-implements it, and this pins both to the standard's check value.
TEST(Split, MatchesIndependentPythonImplementation) {
  auto want = json::parse(read_file(fixtures() / "split_small.expected.json"));
  EXPECT_EQ(std::to_string(std::mt19937_64(5489)()), want["mt19937_64_seed5489_first"].get<std::string>());
  std::mt19937_64 check;
  check.discard(9999);
  EXPECT_EQ(check(), 9981545732273789042ull);  // [rand.predef]
  Dataset d;
  for (int l : want["labels"].get<std::vector<int>>()) d.rows.push_back({"", l});
  for (const auto& c : want["cases"]) {
    SCOPED_TRACE(c.dump());
    auto s = stratified_split(d, c["fraction"].get<double>(), c["seed"].get<uint64_t>());
    EXPECT_EQ(s.second, c["second"].get<std::vector<size_t>>());
    check_split_summary(s, c);
  }
}

TEST(Split, PartsAreDisjointSortedCompleteAndDeterministic) {
  auto d = load_dataset(ag_news_test_csv(), DataFormat::AgNews);
  auto a = stratified_split(d, 0.2, 123), b = stratified_split(d, 0.2, 123), c = stratified_split(d, 0.2, 124);
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
  EXPECT_NE(a.second, c.second);
  EXPECT_TRUE(std::is_sorted(a.first.begin(), a.first.end()));
  EXPECT_TRUE(std::is_sorted(a.second.begin(), a.second.end()));
  std::set<size_t> all(a.first.begin(), a.first.end());
  all.insert(a.second.begin(), a.second.end());
  EXPECT_EQ(all.size(), d.rows.size());
  std::vector<int> per_class(4, 0);
  for (size_t i : a.second) ++per_class[d.rows[i].label];
  EXPECT_EQ(per_class, std::vector<int>(4, 380));
  EXPECT_THROW(stratified_split(d, 1.5, 0), Error);
  EXPECT_THROW(stratified_split(d, -0.1, 0), Error);
}
