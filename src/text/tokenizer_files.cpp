// The three on-disk layouts of the GPT-2 tokenizer: HF vocab.json +
// merges.txt, OpenAI encoder.json + vocab.bpe (the same two formats under
// other names), and HF tokenizer.json.
#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"

namespace gpt2q {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Vocab = std::unordered_map<std::string, int32_t>;
using Merges = std::vector<text::BpeModel::Merge>;

json parse_tokenizer_json(const fs::path& path) { return read_json_file(path, kTokenizerFileLimit); }

// `what` says where in the file the object sits ("" for the top level).
Vocab vocab_from_json(const json& j, const std::string& where) {
  if (!j.is_object() || j.empty()) fail("{}: expected a non-empty JSON object mapping tokens to ids", where);
  Vocab vocab;
  vocab.reserve(j.size());
  std::vector<std::pair<int32_t, const std::string*>> by_id;
  by_id.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const json& v = it.value();
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max())
      fail("{}: token '{}' has id {}, expected an integer 0..2147483647", where, it.key(), json_brief(v));
    auto id = static_cast<int32_t>(v.get<int64_t>());
    by_id.emplace_back(id, &it.key());
    vocab.emplace(it.key(), id);
  }
  std::sort(by_id.begin(), by_id.end());
  for (size_t i = 1; i < by_id.size(); ++i)
    if (by_id[i].first == by_id[i - 1].first)
      fail("{}: id {} is used by both '{}' and '{}'", where, by_id[i].first, *by_id[i - 1].second, *by_id[i].second);
  return vocab;
}

std::optional<text::BpeModel::Merge> split_merge(std::string_view line, std::string where) {
  size_t sp = line.find(' ');
  if (sp == 0 || sp == std::string_view::npos || sp + 1 == line.size() || line.find(' ', sp + 1) != line.npos)
    return std::nullopt;
  return text::BpeModel::Merge{std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)), std::move(where)};
}

Merges read_merges_txt(const fs::path& path) {
  const std::string text = read_file(path, kTokenizerFileLimit);
  // A merges file has at least its "#version" line (one with only that line
  // is odd but legal: a byte-level vocabulary without merges). Nothing at
  // all is a truncated or wrongly created file, which would otherwise
  // tokenize every text into single bytes without a word.
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    fail("{}: empty file (expected a \"#version\" line and one merge per line)", path.string());
  size_t bad = 0;
  if (!valid_utf8(text, &bad)) fail("{}: invalid UTF-8 at byte {}", path.string(), bad);
  Merges merges;
  size_t pos = 0;
  for (int64_t line_no = 1; pos < text.size(); ++line_no) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    auto m = split_merge(line, fmt::format("{}:{}", path.string(), line_no));
    if (!m) fail("{}:{}: expected two tokens separated by one space", path.string(), line_no);
    merges.push_back(std::move(*m));
  }
  return merges;
}

const json* member(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

// tokenizer.json options that would change the result and that GPT-2 does not use.
void check_supported(const json& j, const std::string& where) {
  if (const json* n = member(j, "normalizer")) fail("{}: normalizer {} is not supported", where, json_brief(*n));
  const json* pre = member(j, "pre_tokenizer");
  if (!pre || !pre->is_object() || pre->value("type", "") != "ByteLevel" || pre->value("add_prefix_space", false) ||
      !pre->value("use_regex", true))
    fail("{}: pre_tokenizer must be ByteLevel without add_prefix_space (GPT-2's), got {}", where,
         pre ? json_brief(*pre) : "null");
  const json& model = j.at("model");
  if (model.value("type", "BPE") != "BPE") fail("{}: model type '{}' is not BPE", where, model.value("type", ""));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json* v = member(model, key); v && !(v->is_string() && v->get<std::string>().empty()))
      fail("{}: model.{} {} is not supported", where, key, json_brief(*v));
  for (const char* key : {"dropout", "unk_token"})
    if (member(model, key)) fail("{}: model.{} is not supported", where, key);
  for (const char* key : {"byte_fallback", "ignore_merges"})
    if (const json* v = member(model, key); v && !(v->is_boolean() && !v->get<bool>()))
      fail("{}: model.{} is not supported", where, key);
}

}  // namespace

Tokenizer Tokenizer::from_vocab_merges(const fs::path& vocab_json, const fs::path& merges_txt) {
  Vocab vocab = vocab_from_json(parse_tokenizer_json(vocab_json), vocab_json.string());
  Merges merges = read_merges_txt(merges_txt);
  // HF's GPT2Tokenizer registers <|endoftext|> (its bos/eos/unk) as an added token.
  auto eos = vocab.find("<|endoftext|>");
  if (eos == vocab.end()) fail("{}: no <|endoftext|> token", vocab_json.string());
  std::vector<Impl::AddedToken> added{{eos->first, eos->second}};
  return Tokenizer(std::make_unique<Impl>(vocab, merges, std::move(added), vocab_json.string()));
}

Tokenizer Tokenizer::from_tokenizer_json(const fs::path& tokenizer_json) {
  const std::string where = tokenizer_json.string();
  json j = parse_tokenizer_json(tokenizer_json);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail("{}: no \"model\" object (not a tokenizer.json?)", where);
  check_supported(j, where);
  const json& model = j["model"];
  if (!model.contains("vocab")) fail("{}: model.vocab is missing", where);
  Vocab vocab = vocab_from_json(model["vocab"], where + ": model.vocab");
  Merges merges;
  const json* mj = member(model, "merges");
  if (!mj || !mj->is_array()) fail("{}: model.merges must be an array", where);
  for (size_t i = 0; i < mj->size(); ++i) {
    const json& m = (*mj)[i];
    std::string at = fmt::format("{}: model.merges[{}]", where, i);
    std::optional<text::BpeModel::Merge> merge;
    if (m.is_string())  // tokenizers < 0.20 writes "a b"
      merge = split_merge(m.get<std::string>(), at);
    else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())  // newer: ["a", "b"]
      merge = text::BpeModel::Merge{m[0].get<std::string>(), m[1].get<std::string>(), at};
    if (!merge) fail("{}: expected \"a b\" or [\"a\", \"b\"], got {}", at, json_brief(m));
    merges.push_back(std::move(*merge));
  }
  std::vector<Impl::AddedToken> added;
  if (const json* aj = member(j, "added_tokens")) {
    if (!aj->is_array()) fail("{}: added_tokens must be an array", where);
    for (const json& a : *aj) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
          a["id"].get<int64_t>() > std::numeric_limits<int32_t>::max() || !a.contains("content") ||
          !a["content"].is_string())
        fail("{}: added token {} needs an integer id and a string content", where, json_brief(a));
      for (const char* key : {"lstrip", "rstrip", "single_word"})
        if (a.value(key, false)) fail("{}: added token {} uses {}, which is not supported", where, json_brief(a), key);
      added.push_back({a["content"].get<std::string>(), static_cast<int32_t>(a["id"].get<int64_t>())});
    }
  }
  return Tokenizer(std::make_unique<Impl>(vocab, merges, std::move(added), where));
}

bool Tokenizer::present(const fs::path& dir) {
  std::error_code ec;
  auto has = [&](const char* name) { return fs::is_regular_file(dir / name, ec); };
  return (has("vocab.json") && has("merges.txt")) || (has("encoder.json") && has("vocab.bpe")) ||
         has("tokenizer.json");
}

Tokenizer Tokenizer::load(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("{}: {}", dir.string(), fs::exists(dir, ec) ? "not a directory" : "no such directory");
  auto has = [&](const char* name) { return fs::is_regular_file(dir / name, ec); };
  if (has("vocab.json") && has("merges.txt")) return from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
  if (has("encoder.json") && has("vocab.bpe")) return from_vocab_merges(dir / "encoder.json", dir / "vocab.bpe");
  if (has("tokenizer.json")) return from_tokenizer_json(dir / "tokenizer.json");
  std::string why = "no tokenizer files";
  if (has("vocab.json")) why = "vocab.json without merges.txt";
  if (has("merges.txt")) why = "merges.txt without vocab.json";
  if (has("encoder.json")) why = "encoder.json without vocab.bpe";
  if (has("vocab.bpe")) why = "vocab.bpe without encoder.json";
  fail("{}: {} (want vocab.json + merges.txt, encoder.json + vocab.bpe, or tokenizer.json)", dir.string(), why);
}

}  // namespace gpt2q
