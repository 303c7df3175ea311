#pragma once
// How far one model's predicted distributions drift from a reference's, in
// the manner of llama.cpp's `llama-perplexity --kl-divergence`: per predicted
// distribution KL(P_ref || P_cand) = Σ_v p_ref(v) · (log p_ref(v) − log p_cand(v)),
// both the softmax of the models' logits, in double precision; top-1
// agreement = same argmax (lowest index on ties, as torch.argmax).
// Used by `gpt2q kld` and `gpt2q compare`.
#include <cstdint>
#include <span>
#include <vector>

namespace gpt2q {

class GPT2Model;

// What one predicted distribution contributes.
struct Divergence {
  double kl = 0;
  bool same_top1 = false;
  double nll_ref = 0, nll_cand = 0;  // of the target, when there is one
};

// log-softmax of a row, in double.
void log_softmax(const float* row, int64_t n, std::vector<double>& out);

// `target` < 0: no target (nll_* stay 0).
Divergence divergence(const float* ref, const float* cand, int64_t n, int64_t target);

// Divergences of the class distributions of two classifiers' logits [n, K].
std::vector<Divergence> row_divergences(std::span<const float> ref_logits, std::span<const float> cand_logits,
                                        int64_t num_classes);

// Next-token divergences of two LMs over the positions `gpt2q perplexity`
// scores (eval/perplexity.h windows), each position once, its own token as
// target. `cand_seconds` (optional) gets the wall time of each window's
// candidate forward pass.
std::vector<Divergence> text_divergences(const GPT2Model& ref, const GPT2Model& cand, const std::vector<int32_t>& ids,
                                         int64_t max_length, int64_t stride,
                                         std::vector<double>* cand_seconds = nullptr);

struct DivergenceSummary {
  int64_t count = 0;
  double kl_mean = 0, kl_median = 0, kl_p90 = 0, kl_p99 = 0, kl_max = 0;
  double top1_agreement = 0;
};
// Error on an empty input. Percentiles as eval/classify.h percentile().
DivergenceSummary summarize_divergences(const std::vector<Divergence>& d);

}  // namespace gpt2q
