#pragma once
// Sliding-window perplexity as in the transformers guide "Perplexity of
// fixed-length models", with exact token counting.
//
// The text is tokenized once into ids[0..N). Windows of max_length tokens
// start at 0, stride, 2·stride, ...; the last one is cut at N and the
// schedule stops after the window that reaches N. Window w = [begin, end)
// scores the positions it is the first to reach, [max(prev_end, begin + 1),
// end): the transformers loop's target slice (trg_len = end - prev_end tokens
// at the end of the window) less any position without context inside the
// window (the window's first token, which the label shift drops). With
// stride < max_length every token after the first is scored exactly once;
// with stride == max_length (disjoint windows) the first token of each window
// has no context and is not scored, as in transformers.
//
// NLL of position p = logsumexp(logits[p-1]) - logits[p-1][ids[p]], logits from
// the window's own forward pass, summed in double precision. The guide's code
// subtracts one token per window from the count; we count the positions we
// actually score, so nll is the exact mean.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace gpt2q {

class GPT2Model;

struct PerplexityWindow {
  int64_t begin = 0, end = 0;  // the window's tokens: ids[begin, end)
  int64_t score_begin = 0;     // scored positions: [score_begin, end)
  int64_t scored() const { return end - score_begin; }
};

// Error unless n_tokens >= 0, max_length >= 1 and 1 <= stride <= max_length.
std::vector<PerplexityWindow> perplexity_windows(int64_t n_tokens, int64_t max_length, int64_t stride);

struct PerplexityOptions {
  int64_t max_length = 0;  // 0: the model's n_positions
  int64_t stride = 0;      // 0: max_length / 2 (at least 1)
  bool progress = true;    // bar over windows on stderr
};

struct PerplexityResult {
  int64_t tokens = 0;   // positions scored
  double nll = 0;       // mean negative log-likelihood, natural log
  double ppl = 0;       // exp(nll)
  int64_t windows = 0;
  int64_t max_length = 0, stride = 0;  // as used (defaults resolved)
  double seconds = 0;                  // wall time of the forward passes
};

// Error when max_length is outside [1, n_positions], stride outside
// [1, max_length], an id outside the vocabulary, or nothing gets scored
// (fewer than 2 tokens, or max_length 1).
PerplexityResult evaluate_perplexity(const GPT2Model& model, std::span<const int32_t> ids,
                                     const PerplexityOptions& opts = {});

// A whole UTF-8 text file (perplexity / kld / compare --text); Error naming
// the file when it is missing, empty or not valid UTF-8.
std::string read_text_file(const std::filesystem::path& path);

// log(sum(exp(row - max))) + max - row[target]: exp terms by an AVX2 float exp
// (2 ulp), summed and logged in double precision.
double token_nll(std::span<const float> logits_row, int32_t target);

}  // namespace gpt2q
