#pragma once
// Labelled text for classification: AG News CSV (no header; label 1-4, title,
// description; text = title + " " + description; class = label - 1), generic
// CSV with a header holding `text` and `label` columns, or JSONL lines
// {"text": ..., "label": ...}. Labels are 0-based integers in the result.
// Errors name the file and line: "PATH:LINE: problem" (malformed quoting,
// wrong column count, bad label, invalid UTF-8, empty file).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace gpt2q {

enum class DataFormat { AgNews, Csv, Jsonl };

struct LabeledText {
  std::string text;
  int32_t label = 0;  // 0-based
};

struct Dataset {
  std::filesystem::path source;
  std::vector<LabeledText> rows;
  int32_t num_labels() const;  // max label + 1
};

// "agnews" | "csv" | "jsonl" (Error otherwise).
DataFormat parse_data_format(std::string_view name);
// By extension: .jsonl -> Jsonl; .csv with a header containing text,label -> Csv; else AgNews.
DataFormat guess_data_format(const std::filesystem::path& path);
Dataset load_dataset(const std::filesystem::path& path, DataFormat format);

// RFC 4180 CSV records (quoted fields, "" escapes, embedded newlines; LF or
// CRLF). Each record carries the 1-based line where it starts.
struct CsvRecord {
  int64_t line = 0;
  std::vector<std::string> fields;
};
std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& source);

// Seeded stratified split: for each class, shuffle its rows with `seed` and
// send round(fraction * n_class) of them to `second` (e.g. eval). Same seed,
// same split. Row order within each part follows the original file order.
// Portable by construction: one std::mt19937_64(seed) drives, class by class
// in ascending label order, a Fisher-Yates shuffle of the class's row indices
// (i from n-1 down to 1 swaps i with a uniform j in [0, i], drawn by rejection
// from whole 64-bit outputs); the first round(fraction * n) indices (halves
// round away from zero) go to `second`. tools/make_io_fixtures.py re-implements it.
struct Split {
  std::vector<size_t> first, second;  // row indices
};
Split stratified_split(const Dataset& data, double second_fraction, uint64_t seed);

}  // namespace gpt2q
