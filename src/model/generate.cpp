// Autoregressive generation with the KV cache: the prompt once, then one
// token per step, LM logits for the last position only.
#include <fmt/format.h>

#include "model/gpt2.h"
#include "model/sampling.h"

namespace gpt2q {

std::vector<int32_t> generate(const GPT2Model& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& opts) {
  const GPT2Config& cfg = model.config();
  if (prompt.empty()) fail("generate: the prompt has no tokens");
  if (opts.max_new_tokens < 0) fail("generate: max_new_tokens must be >= 0, got {}", opts.max_new_tokens);
  const int64_t total = static_cast<int64_t>(prompt.size()) + opts.max_new_tokens;
  if (total > cfg.n_positions)
    fail("generate: {} prompt tokens + {} new tokens exceed the model's n_positions = {}", prompt.size(),
         opts.max_new_tokens, cfg.n_positions);
  if (!opts.greedy) {
    if (!(opts.temperature > 0.0f)) fail("generate: temperature must be > 0, got {}", opts.temperature);
    if (opts.top_k < 0) fail("generate: top-k must be >= 0, got {}", opts.top_k);
  }
  std::vector<int32_t> ids = prompt;
  if (opts.max_new_tokens == 0) return ids;

  KVCache cache = model.new_cache(1, total);
  TokenSampler sampler(opts.seed);
  const int64_t C = cfg.n_embd;
  // The prompt in one pass, then one decode step per new token.
  const TokenBatch prompt_batch{1, static_cast<int64_t>(prompt.size()), prompt, {static_cast<int64_t>(prompt.size())}};
  Tensor h = model.hidden_states(prompt_batch, &cache);
  Tensor logits = to_device(model.lm_logits_from_hidden(h.view({prompt_batch.seq, C}).slice_rows(prompt_batch.seq - 1, prompt_batch.seq)),
                            Device::CPU);
  for (int64_t produced = 0; produced < opts.max_new_tokens; ++produced) {
    const int64_t vocab = logits.dim(1);
    const int32_t next = opts.greedy ? argmax_first(logits.data<float>(), vocab)
                                     : sampler.sample(logits.data<float>(), vocab, opts.temperature, opts.top_k);
    ids.push_back(next);
    if (opts.stop_at_eos && cfg.eos_token_id && next == *cfg.eos_token_id) break;
    if (produced + 1 < opts.max_new_tokens) logits = model.decode_step(next, cache);
  }
  return ids;
}

}  // namespace gpt2q
