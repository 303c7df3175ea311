#pragma once
// Reading JSON that came from a file (or from inside one): every parse of
// untrusted text goes through here. nlohmann::json parses iteratively, but
// copying, comparing and dump() recurse, so a value nested 200,000 levels
// deep would crash gpt2q with a stack overflow long after the parse
// succeeded. The depth is capped during the parse, and error messages quote
// values through json_brief, never through a whole dump().
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/file_util.h"

namespace gpt2q {

// Far above any real file: HF configs and tokenizer files nest 4 or 5 deep.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`. Errors (gpt2q::Error, one line): "SOURCE: invalid JSON: ..."
// and "SOURCE: JSON nested deeper than 64 levels".
nlohmann::json parse_json(std::string_view text, const std::string& source);

// read_file(path, limit) + parse_json(text, path).
nlohmann::json read_json_file(const std::filesystem::path& path, const FileLimit& limit);

// A short one-line rendering of `j` for error messages: at most about
// `max_chars` characters, ending in "..." when cut. Never walks more of the
// value than it prints, so it is cheap and bounded on any input.
std::string json_brief(const nlohmann::json& j, size_t max_chars = 60);

}  // namespace gpt2q
