#pragma once
// Deterministic synthetic GPT-2 weights that tools/make_fixtures.py reproduces
// bit for bit in numpy, so that large geometries (124M) are checked against
// transformers without committing their weights.
//
// For tensor NAME (canonical, HF layout) element i (row-major):
//   u  = splitmix64((fnv1a64(NAME) ^ seed) + i) >> 40        // 24 random bits
//   r  = float(u) * 2^-23 - 1                                  // exact, in [-1, 1)
//   weights (.weight of Linear/Conv1D, wte, wpe, score): r * 0.05f  (fp32 multiply)
//   LayerNorm weight: 1 + r * 0.1f  (fp32: r*0.1f rounded, then + 1 rounded)
//   biases and LayerNorm bias: r * 0.02f
#include <cstdint>
#include <string>
#include <string_view>

#include "core/splitmix64.h"
#include "io/checkpoint.h"

namespace gpt2q {

uint64_t fnv1a64(std::string_view s);
float synthetic_value(std::string_view name, uint64_t seed, uint64_t index);

// "124m" (GPT-2 small: 768 x 12 layers x 12 heads) or "WIDTHxLAYERSxHEADS",
// with vocab 50257 and 1024 positions. `what` names the argument in errors.
GPT2Config geometry_config(std::string_view geometry, std::string_view what);

// A complete in-memory checkpoint (no files) for `config`; kind decides the
// head (classifier: score.weight [num_labels, n_embd]; LM: tied head).
Checkpoint make_synthetic_checkpoint(const GPT2Config& config, ModelKind kind, uint64_t seed);

}  // namespace gpt2q
