#pragma once
// Next-token choice for generate(). Greedy follows torch.argmax (first index
// of the maximum; a NaN counts as the maximum). Sampling is fully specified so
// that a seed reproduces a run on any platform (std::*_distribution's
// algorithms are implementation-defined, so none is used):
//   z_i = logit_i / temperature                      (fp32, as HF divides)
//   keep i if top_k == 0 or z_i >= the k-th largest z (ties with it kept)
//   w_i = exp(z_i - max z) in double for kept i, else 0
//   u   = (mt19937_64() >> 11) · 2^-53              (one draw per token)
//   the token is the first i with w_0 + ... + w_i > u · Σw
// torch.multinomial draws differently, so sampled text cannot match HF's;
// greedy text does.
#include <cstdint>
#include <random>
#include <vector>

namespace gpt2q {

int32_t argmax_first(const float* values, int64_t n);

class TokenSampler {
 public:
  explicit TokenSampler(uint64_t seed) : rng_(seed) {}
  // temperature > 0; top_k 0 (or >= n) keeps the whole vocabulary.
  int32_t sample(const float* logits, int64_t n, float temperature, int64_t top_k);

 private:
  std::mt19937_64 rng_;
  std::vector<float> scaled_, sorted_;
  std::vector<double> weights_;
};

}  // namespace gpt2q
