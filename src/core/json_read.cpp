#include "core/json_read.h"

#include <algorithm>

#include "core/error.h"

namespace gpt2q {

namespace {

using json = nlohmann::json;

// nlohmann's what() without its "[json.exception.parse_error.101] " tag, cut
// short: its "last read: '...'" quotes the whole offending token, which can
// be a megabyte-long string.
std::string parse_error_text(const json::exception& e) {
  std::string_view s = e.what();
  if (s.starts_with("[json.exception.")) {
    const size_t close = s.find("] ");
    if (close != std::string_view::npos) s.remove_prefix(close + 2);
  }
  constexpr size_t kMax = 160;
  if (s.size() <= kMax) return std::string(s);
  size_t cut = kMax - 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
  return std::string(s.substr(0, cut)) + "...";
}

// `s` as a JSON string literal, of at most about `budget` bytes of `s`.
void quote_into(std::string_view s, size_t budget, std::string& out) {
  const bool cut = s.size() > budget;
  if (cut) s = s.substr(0, budget);
  out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  if (cut) out += "...";
}

// Appends `j` as dump() writes it (compact) to `out`, stopping as soon as `out` is longer
// than `limit`; false when it stopped early. Each level appends a character
// before it descends, so the recursion is no deeper than `limit`.
bool brief_into(const json& j, std::string& out, size_t limit) {
  if (out.size() > limit) return false;
  switch (j.type()) {
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!first) out += ',';
        first = false;
        quote_into(it.key(), limit + 1 - std::min(limit, out.size()), out);
        out += ':';
        if (!brief_into(it.value(), out, limit)) return false;
      }
      out += '}';
      break;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const json& v : j) {
        if (!first) out += ',';
        first = false;
        if (!brief_into(v, out, limit)) return false;
      }
      out += ']';
      break;
    }
    case json::value_t::string:
      quote_into(j.get_ref<const std::string&>(), limit + 1 - std::min(limit, out.size()), out);
      break;
    default:  // numbers, booleans, null, binary: short
      out += j.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return out.size() <= limit;
}

// The deepest nesting of `text`'s containers, counting brackets outside
// strings, stopping as soon as it passes `cap`. One linear pass: a parser
// callback would do the same check, but nlohmann's callback parser walks each
// finished object's parent again (quadratic: a safetensors header of 14,000
// tensors took 1 s, 16 s under ASan). Malformed text is the parser's to report.
int nesting_depth(std::string_view text, int cap) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > cap) return depth;
    } else if (c == ']' || c == '}') {
      depth = std::max(0, depth - 1);
    }
  }
  return depth;
}

}  // namespace

json parse_json(std::string_view text, const std::string& source) {
  // Checked before parsing: the parser recurses per level, and so do the
  // copies and destructors of what it builds.
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
    fail("{}: JSON nested deeper than {} levels", source, kMaxJsonDepth);
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", source, parse_error_text(e));
  }
}

json read_json_file(const std::filesystem::path& path, const FileLimit& limit) {
  return parse_json(read_file(path, limit), path.string());
}

std::string json_brief(const json& j, size_t max_chars) {
  std::string out;
  brief_into(j, out, max_chars);
  if (out.size() <= max_chars) return out;
  size_t cut = max_chars > 3 ? max_chars - 3 : 0;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
  out.resize(cut);
  return out + "...";
}

}  // namespace gpt2q
