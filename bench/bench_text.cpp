// GPT-2 BPE encoding (text/tokenizer.h) of the first ~64 KB of WikiText-2's
// test split, steady state: the first (untimed) encode fills the word cache,
// as in a long job. bytes = UTF-8 input, items = tokens produced. Needs
// DATA/gpt2-tokenizer and DATA/wikitext-2-raw/wiki.test.raw, DATA = $GPT2Q_DATA
// or ../shared/data next to the source tree; skipped (an error row) otherwise.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "bench_common.h"
#include "text/tokenizer.h"

namespace gpt2q::bench {
namespace {

namespace fs = std::filesystem;

constexpr size_t kSliceBytes = 64 * 1024;

fs::path data_dir() {
  if (const char* env = std::getenv("GPT2Q_DATA"); env && *env) return env;
  return GPT2Q_DATA_DEFAULT;
}

// The file's first kSliceBytes, extended to the end of that line (so the cut
// never splits a UTF-8 sequence).
std::string text_slice(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() <= kSliceBytes) return text;
  const size_t eol = text.find('\n', kSliceBytes);
  return text.substr(0, eol == std::string::npos ? text.size() : eol + 1);
}

void BM_TokenizerEncode(benchmark::State& state) {
  const fs::path tok_dir = data_dir() / "gpt2-tokenizer", text_file = data_dir() / "wikitext-2-raw" / "wiki.test.raw";
  if (!Tokenizer::present(tok_dir) || !fs::exists(text_file)) {
    state.SkipWithError(("no tokenizer or WikiText-2 under " + data_dir().string() + " (set GPT2Q_DATA)").c_str());
    return;
  }
  const Tokenizer tok = Tokenizer::load(tok_dir);
  const std::string text = text_slice(text_file);
  size_t tokens = tok.encode(text, "wiki.test.raw").size();  // fills the word cache
  for (auto _ : state) {
    auto ids = tok.encode(text, "wiki.test.raw");
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  set_rates(state, static_cast<int64_t>(text.size()), static_cast<int64_t>(tokens));
}
BENCHMARK(BM_TokenizerEncode)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gpt2q::bench
