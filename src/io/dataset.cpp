#include "io/dataset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "core/seeded_shuffle.h"
#include "core/utf8.h"

namespace gpt2q {

namespace {

namespace fs = std::filesystem;

int64_t line_of_offset(std::string_view text, size_t offset) {
  return 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
}

// Whole file, checked for UTF-8 (errors give the line of the first bad byte);
// a leading byte-order mark, as spreadsheet exports write, is dropped.
std::string read_text(const fs::path& path) {
  std::string text = read_file(path);
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  if (size_t bad = first_invalid_utf8(text); bad != kUtf8Valid)
    fail("{}:{}: invalid UTF-8", path.string(), line_of_offset(text, bad));
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail("{}: empty file", path.string());
  return text;
}

// Non-negative decimal integer, digits only (what int() accepts minus signs
// and spaces, which real label columns never have).
bool parse_label(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 9) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && s[0] != '-' && s[0] != '+';
}

std::string brief(std::string_view s) {
  std::string b(s.substr(0, 40));
  if (s.size() > 40) b += "...";
  return b;
}

Dataset load_agnews(const fs::path& path) {
  const std::string src = path.string();
  auto records = parse_csv(read_text(path), src);
  Dataset d;
  d.source = path;
  d.rows.reserve(records.size());
  for (auto& r : records) {
    if (r.fields.size() != 3)
      fail("{}:{}: expected 3 fields (label, title, description), got {}", src, r.line, r.fields.size());
    int64_t label = 0;
    if (!parse_label(r.fields[0], label) || label < 1 || label > 4)
      fail("{}:{}: label '{}' is not 1, 2, 3 or 4", src, r.line, brief(r.fields[0]));
    d.rows.push_back({r.fields[1] + " " + r.fields[2], static_cast<int32_t>(label - 1)});
  }
  if (d.rows.empty()) fail("{}: no rows", src);
  return d;
}

Dataset load_header_csv(const fs::path& path) {
  const std::string src = path.string();
  auto records = parse_csv(read_text(path), src);
  if (records.empty()) fail("{}: empty file", src);
  const auto& header = records.front().fields;
  auto column = [&](const char* name) {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) fail("{}:{}: header has no '{}' column", src, records.front().line, name);
    if (std::find(it + 1, header.end(), name) != header.end())
      fail("{}:{}: header has two '{}' columns", src, records.front().line, name);
    return static_cast<size_t>(it - header.begin());
  };
  const size_t text_col = column("text"), label_col = column("label");
  Dataset d;
  d.source = path;
  d.rows.reserve(records.size() - 1);
  for (size_t i = 1; i < records.size(); ++i) {
    auto& r = records[i];
    if (r.fields.size() != header.size())
      fail("{}:{}: expected {} fields as in the header, got {}", src, r.line, header.size(), r.fields.size());
    int64_t label = 0;
    if (!parse_label(r.fields[label_col], label))
      fail("{}:{}: label '{}' is not a non-negative integer", src, r.line, brief(r.fields[label_col]));
    d.rows.push_back({std::move(r.fields[text_col]), static_cast<int32_t>(label)});
  }
  if (d.rows.empty()) fail("{}: no rows after the header", src);
  return d;
}

Dataset load_jsonl(const fs::path& path) {
  const std::string src = path.string();
  const std::string text = read_text(path);
  Dataset d;
  d.source = path;
  int64_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + pos, end - pos);
    pos = end + 1;
    ++line;
    if (l.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json j = parse_json(l, fmt::format("{}:{}", src, line));
    if (!j.is_object()) fail("{}:{}: expected a JSON object", src, line);
    if (!j.contains("text") || !j["text"].is_string()) fail("{}:{}: 'text' must be a string", src, line);
    static const nlohmann::json kAbsent;
    const nlohmann::json& lab = j.contains("label") ? j["label"] : kAbsent;  // a reference: no copy
    if (!lab.is_number_integer() || lab.get<int64_t>() < 0 || lab.get<int64_t>() > 999'999'999)
      fail("{}:{}: 'label' must be a non-negative integer", src, line);
    d.rows.push_back({j["text"].get<std::string>(), static_cast<int32_t>(lab.get<int64_t>())});
  }
  if (d.rows.empty()) fail("{}: no rows", src);
  return d;
}

}  // namespace

int32_t Dataset::num_labels() const {
  int32_t m = -1;
  for (const auto& r : rows) m = std::max(m, r.label);
  return m + 1;
}

DataFormat parse_data_format(std::string_view name) {
  if (name == "agnews") return DataFormat::AgNews;
  if (name == "csv") return DataFormat::Csv;
  if (name == "jsonl") return DataFormat::Jsonl;
  fail("unknown data format '{}' (agnews, csv or jsonl)", name);
}

DataFormat guess_data_format(const fs::path& path) {
  if (path.extension() == ".jsonl") return DataFormat::Jsonl;
  if (path.extension() == ".csv") {
    // Sniffing reads only regular files: a FIFO would block here (the loader
    // then refuses it).
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return DataFormat::AgNews;
    std::ifstream in(path, std::ios::binary);
    std::string first;
    if (in && std::getline(in, first)) {
      if (first.compare(0, 3, "\xEF\xBB\xBF") == 0) first.erase(0, 3);
      try {
        auto recs = parse_csv(first, path.string());
        if (!recs.empty()) {
          const auto& f = recs.front().fields;
          if (std::find(f.begin(), f.end(), "text") != f.end() && std::find(f.begin(), f.end(), "label") != f.end())
            return DataFormat::Csv;
        }
      } catch (const Error&) {
        // A header never spans lines; anything else is AG News's to judge.
      }
    }
  }
  return DataFormat::AgNews;
}

Dataset load_dataset(const fs::path& path, DataFormat format) {
  switch (format) {
    case DataFormat::AgNews: return load_agnews(path);
    case DataFormat::Csv: return load_header_csv(path);
    case DataFormat::Jsonl: return load_jsonl(path);
  }
  fail("{}: unknown data format", path.string());
}

Split stratified_split(const Dataset& data, double second_fraction, uint64_t seed) {
  if (!(second_fraction >= 0.0 && second_fraction <= 1.0))
    fail("split fraction {} is not between 0 and 1", second_fraction);
  std::map<int32_t, std::vector<size_t>> by_class;  // ascending label: fixed draw order
  for (size_t i = 0; i < data.rows.size(); ++i) by_class[data.rows[i].label].push_back(i);
  std::mt19937_64 rng(seed);
  Split s;
  for (auto& [label, idx] : by_class) {
    fisher_yates_shuffle(idx, rng);
    const auto k = static_cast<size_t>(std::llround(second_fraction * static_cast<double>(idx.size())));
    s.second.insert(s.second.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k));
    s.first.insert(s.first.end(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end());
  }
  std::sort(s.first.begin(), s.first.end());
  std::sort(s.second.begin(), s.second.end());
  return s;
}

}  // namespace gpt2q
