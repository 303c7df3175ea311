// RFC 4180 records, read the way Python's csv module (default "excel"
// dialect) reads them, so that datasets give the same texts as a Python
// pipeline: quoted fields keep everything verbatim (newlines included), ""
// inside quotes is one quote, a quote inside an unquoted field is literal,
// characters after a closing quote are appended to the field, and blank lines
// yield no record. Unlike Python, a quoted field still open at the end of the
// input is an error rather than silently swallowing the rest of the file.
#include "core/error.h"
#include "io/dataset.h"

namespace gpt2q {

std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& source) {
  enum class State { StartRecord, StartField, InField, InQuoted, QuoteInQuoted };
  std::vector<CsvRecord> records;
  CsvRecord rec;
  std::string field;
  State state = State::StartRecord;
  int64_t line = 1, quote_line = 0;

  auto end_field = [&] {
    rec.fields.push_back(std::move(field));
    field.clear();
  };
  auto end_record = [&] {
    end_field();
    records.push_back(std::move(rec));
    rec = CsvRecord{};
    state = State::StartRecord;
  };

  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    const bool newline = c == '\n' || c == '\r';
    // A line break outside quotes is "\r\n", "\n" or a lone "\r", as in Python.
    auto consume_newline = [&] {
      if (c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
      ++line;
    };
    switch (state) {
      case State::StartRecord:
        if (newline) {
          consume_newline();
          continue;
        }
        rec.line = line;
        state = State::StartField;
        [[fallthrough]];
      case State::StartField:
        if (c == '"') {
          state = State::InQuoted;
          quote_line = line;
        } else if (c == ',') {
          end_field();
        } else if (newline) {
          end_record();
          consume_newline();
        } else {
          field.push_back(c);
          state = State::InField;
        }
        break;
      case State::InField:
        if (c == ',') {
          end_field();
          state = State::StartField;
        } else if (newline) {
          end_record();
          consume_newline();
        } else {
          field.push_back(c);
        }
        break;
      case State::InQuoted:
        if (c == '"') {
          state = State::QuoteInQuoted;
        } else {
          field.push_back(c);
          if (c == '\n' || (c == '\r' && !(i + 1 < n && text[i + 1] == '\n'))) ++line;
        }
        break;
      case State::QuoteInQuoted:
        if (c == '"') {
          field.push_back('"');
          state = State::InQuoted;
        } else if (c == ',') {
          end_field();
          state = State::StartField;
        } else if (newline) {
          end_record();
          consume_newline();
        } else {
          field.push_back(c);
          state = State::InField;
        }
        break;
    }
  }
  if (state == State::InQuoted) fail("{}:{}: unterminated quoted field", source, quote_line);
  if (state != State::StartRecord) end_record();
  return records;
}

}  // namespace gpt2q
