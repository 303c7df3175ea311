// gpt2q tokenize: GPT-2 token ids of every input line, one JSON line each.
#include <cstdio>
#include <iostream>
#include <iterator>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "core/file_util.h"
#include "text/tokenizer.h"

namespace {

struct TokenizeArgs {
  std::string tokenizer, model, file;
  bool json = true;
};

gpt2q::Tokenizer find_tokenizer(const TokenizeArgs& a) {
  if (!a.tokenizer.empty()) return gpt2q::Tokenizer::load(a.tokenizer);
  if (!a.model.empty()) {
    if (!gpt2q::Tokenizer::present(a.model))
      gpt2q::fail("{}: no tokenizer files (want vocab.json + merges.txt, encoder.json + vocab.bpe, or "
                  "tokenizer.json); pass --tokenizer DIR",
                  a.model);
    return gpt2q::Tokenizer::load(a.model);
  }
  gpt2q::fail("tokenize: no tokenizer: pass --tokenizer DIR (or --model DIR holding the tokenizer files)");
}

void run(const TokenizeArgs& a) {
  const gpt2q::Tokenizer tok = find_tokenizer(a);
  std::string input;
  if (a.file.empty()) {
    input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (std::cin.bad()) gpt2q::fail("<stdin>: read error");
  } else {
    input = gpt2q::read_file(a.file);
  }
  const std::string name = a.file.empty() ? "<stdin>" : a.file;
  std::string out;
  size_t pos = 0;
  // Every '\n' ends a line; text after the last one is a line of its own.
  for (int64_t line_no = 1; pos < input.size(); ++line_no) {
    size_t nl = input.find('\n', pos);
    if (nl == std::string::npos) nl = input.size();
    auto ids = tok.encode(std::string_view(input).substr(pos, nl - pos), fmt::format("{}:{}", name, line_no));
    pos = nl + 1;
    out += "{\"ids\":[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      fmt::format_to(std::back_inserter(out), "{}", ids[i]);
      if (out.size() > (1 << 16)) {  // within a line too: one line can hold millions of ids
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
      }
    }
    out += "]}\n";
    if (out.size() > (1 << 16)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (std::fflush(stdout) != 0) gpt2q::fail("<stdout>: write failed");
}

}  // namespace

GPT2Q_COMMAND(tokenize) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* cmd = app.add_subcommand(
      "tokenize", "GPT-2 token ids of each input line (without its newline), one {\"ids\":[...]} JSON line each");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Directory with vocab.json + merges.txt, encoder.json + vocab.bpe, or tokenizer.json");
  cmd->add_option("--model", args->model, "Model directory; its tokenizer files are used when --tokenizer is absent");
  cmd->add_option("--file", args->file, "Input text (default: stdin)");
  cmd->add_flag("--json", args->json, "JSON lines output (the only format; accepted for uniformity with other commands)");
  cmd->callback([args] { run(*args); });
}
