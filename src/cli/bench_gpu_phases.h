#pragma once
// The timed phases of `gpt2q bench --device cuda` (bench_gpu.h), each on one
// model already on the GPU, writing its figures into the variant's row of
// tools/gpu_bench_report.py's interchange format. Each phase measures what
// tools/bench_peers.py measures for the peers, the same way (its settings
// are the constants below).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpt2q {
class GPT2Model;
}

namespace gpt2q::cli::gpu_bench {

// tools/bench_peers.py's MAX_LENGTH, BATCH, PPL_MAX_LENGTH, PPL_STRIDE,
// DECODE_NEW_TOKENS, the batch-1 warm-up calls, and DECODE_PROMPT with its ids.
constexpr int64_t kMaxLength = 128, kBatch = 256, kPplMaxLength = 1024, kPplStride = 512, kDecodeNew = 128;
constexpr int kBatch1Warmups = 3;
constexpr const char* kDecodePrompt = "In 1998, the company announced that it would build a new factory near the river";
inline const std::vector<int32_t> kDecodePromptIds = {818, 7795, 11, 262, 1664, 3414, 326, 340,
                                                      561, 1382, 257, 649, 8860, 1474, 262, 7850};

struct Data {
  std::vector<std::vector<int32_t>> seqs;  // AG News: the first max(n1, n256) texts, cut to kMaxLength tokens
  std::vector<int32_t> wiki;               // WikiText-2 test, tokenized whole
  std::vector<int32_t> prompt;             // the decode prompt
};

// "bench: LINE" on stderr, flushed (the run's log if it is cut short).
void log_line(const std::string& line);
// Mean token count of the first n sequences.
double mean_length(const std::vector<std::vector<int32_t>>& seqs, size_t n);

// row: batch1, batch1_ms, batch1_p50_ms, argmax_first_n.
void run_batch1(const GPT2Model& model, const Data& d, int64_t n1, nlohmann::json& row);
// row: batch256, batch256_samples_per_s, peak_bytes.
void run_batch256(const GPT2Model& model, const Data& d, int64_t n256, nlohmann::json& row);
// row: decode, decode_tokens_per_s.
void run_decode(const GPT2Model& model, const Data& d, int runs, nlohmann::json& row);
// row: perplexity, ppl_seconds, ppl. max_windows 0: the whole text.
void run_ppl(const GPT2Model& model, const Data& d, int64_t max_windows, nlohmann::json& row);

}  // namespace gpt2q::cli::gpu_bench
