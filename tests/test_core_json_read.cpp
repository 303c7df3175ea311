// core/json_read and the file readers' guards: JSON nested beyond the cap is
// an error (not a stack overflow later), parse errors are one short line,
// json_brief is bounded on any value, size caps apply before reading, and a
// FIFO is refused without blocking.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "support/test_env.h"

using namespace gpt2q;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string nested(int levels) { return std::string(levels, '[') + std::string(levels, ']'); }

}  // namespace

TEST(ParseJson, DepthCapAllowsRealNestingAndRefusesDeepValues) {
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth), "x").dump().size(), 2u * kMaxJsonDepth);
  EXPECT_EQ(error_of([] { parse_json(nested(kMaxJsonDepth + 1), "f.json"); }),
            "f.json: JSON nested deeper than 64 levels");
  // 200,000 levels (objects and arrays mixed): refused during the parse.
  std::string deep;
  for (int i = 0; i < 100'000; ++i) deep += "{\"a\":[";
  deep += "1";
  for (int i = 0; i < 100'000; ++i) deep += "]}";
  EXPECT_EQ(error_of([&] { parse_json(deep, "g.json"); }), "g.json: JSON nested deeper than 64 levels");
}

TEST(ParseJson, BracketsInsideStringsDoNotCount) {
  // Brackets and escaped quotes inside strings are text, not nesting.
  const std::string s = "{\"k\": \"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"}";
  EXPECT_EQ(parse_json(s, "f")["k"].get<std::string>().size(), 2001u);
  EXPECT_EQ(error_of([] { parse_json("[\"\\\\\"" + nested(kMaxJsonDepth) + "]", "h.json"); }),
            "h.json: JSON nested deeper than 64 levels");
}

TEST(ParseJson, LinearInTheNumberOfMembers) {
  // A safetensors-like header with 200,000 small objects in one object. The
  // depth check once ran as a parser callback, which nlohmann runs with a
  // walk over the parent object per finished member: quadratic, 14,000
  // members took 1 s (16 s under ASan). Linear, this is well under a second
  // even under ASan; the bound leaves a wide margin for a loaded machine.
  std::string s = "{";
  for (int i = 0; i < 200'000; ++i)
    s += fmt::format("{}\"t{}\":{{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", i ? "," : "", i);
  s += "}";
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(parse_json(s, "f").size(), 200'000u);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0);
}

TEST(ParseJson, ErrorsAreOneShortLine) {
  const std::string e = error_of([] { parse_json("{\"a\": \"" + std::string(1'000'000, 'x'), "f.json"); });
  EXPECT_EQ(e.rfind("f.json: invalid JSON: ", 0), 0u) << e;
  EXPECT_LT(e.size(), 200u);
  EXPECT_EQ(e.find('\n'), std::string::npos);
  EXPECT_EQ(e.find("[json.exception"), std::string::npos) << e;
  EXPECT_EQ(parse_json("{\"a\": [1, 2]}", "f")["a"][1], 2);
}

TEST(JsonBrief, BoundedOnAnyValue) {
  EXPECT_EQ(json_brief(json::parse("[1, 2]")), "[1,2]");
  EXPECT_EQ(json_brief(json::parse("{\"a\": \"b\"}")), "{\"a\":\"b\"}");
  EXPECT_EQ(json_brief(json(nullptr)), "null");
  const json big = std::vector<int>(100'000, 1);
  EXPECT_EQ(json_brief(big).size(), 60u);
  EXPECT_TRUE(json_brief(big).ends_with("...")) << json_brief(big);
  json many = json::array();
  for (int i = 0; i < 100'000; ++i) many.push_back(json::object({{std::string(50, 'k'), std::string(50, 'v')}}));
  EXPECT_LE(json_brief(many, 80).size(), 80u);
  EXPECT_EQ(json_brief(json(std::string(1000, 'x')), 20), "\"xxxxxxxxxxxxxxxx...");
}

TEST(ReadFile, SizeCapIsCheckedBeforeReading) {
  const fs::path dir = test::temp_dir("read_file_cap");
  const fs::path p = dir / "config.json";
  write_file_atomic(p, "");
  fs::resize_file(p, (uint64_t{16} << 20) + 1);  // sparse
  EXPECT_EQ(error_of([&] { read_file(p, kConfigFileLimit); }),
            p.string() + ": 16777217 bytes, more than the 16777216 allowed for a config file");
  fs::resize_file(p, uint64_t{16} << 20);
  EXPECT_EQ(read_file(p, kConfigFileLimit).size(), uint64_t{16} << 20);
  fs::remove_all(dir);
}

TEST(ReadFile, FifoAndDirectoryAreRefusedWithoutBlocking) {
  const fs::path dir = test::temp_dir("read_file_fifo");
  const fs::path fifo = dir / "model.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Without the stat() before open(), each of these blocks forever.
  EXPECT_EQ(error_of([&] { read_file(fifo); }), fifo.string() + ": not a regular file");
  EXPECT_EQ(error_of([&] { MappedFile::open(fifo); }), fifo.string() + ": not a regular file");
  EXPECT_EQ(error_of([&] { read_json_file(fifo, kConfigFileLimit); }), fifo.string() + ": not a regular file");
  EXPECT_EQ(error_of([&] { read_file(dir); }), dir.string() + ": not a regular file");
  EXPECT_EQ(error_of([&] { read_file(dir / "absent"); }), (dir / "absent").string() + ": no such file");
  fs::remove_all(dir);
}
