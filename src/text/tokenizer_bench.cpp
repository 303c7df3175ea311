#include "text/tokenizer_bench.h"

#include <chrono>

#include "core/error.h"

namespace gpt2q {

double tokenizer_throughput_mb_s(const Tokenizer& tok, std::string_view text, int repeats) {
  if (repeats < 1) fail("tokenizer benchmark: repeats must be >= 1, got {}", repeats);
  size_t sink = tok.encode(text, "benchmark text").size();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) sink += tok.encode(text, "benchmark text").size();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Use the result so the calls cannot be dropped.
  GPT2Q_CHECK(sink > 0 || text.empty(), "tokenizer produced no ids for {} bytes", text.size());
  return seconds > 0 ? static_cast<double>(text.size()) * repeats / 1e6 / seconds : 0.0;
}

}  // namespace gpt2q
