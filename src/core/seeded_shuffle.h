#pragma once
// The seeded shuffle behind io's stratified_split and train's epoch order,
// portable by construction (no std::uniform_int_distribution, whose algorithm
// the standard leaves to the library): a Fisher-Yates shuffle, i from n-1
// down to 1 swapping i with a uniform j in [0, i] drawn by rejection from
// whole std::mt19937_64 outputs. tools/make_io_fixtures.py re-implements it.
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace gpt2q {

// Uniform in [0, bound] by rejection: no modulo bias.
inline uint64_t uniform_upto(std::mt19937_64& rng, uint64_t bound) {
  if (bound == UINT64_MAX) return rng();
  const uint64_t range = bound + 1;
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % range + 1) % range;  // largest multiple of range, minus 1
  uint64_t x;
  do x = rng();
  while (x > limit);
  return x % range;
}

// Shuffles `idx` in place, last position first, drawing from `rng`.
inline void fisher_yates_shuffle(std::vector<size_t>& idx, std::mt19937_64& rng) {
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[uniform_upto(rng, i - 1)]);
}

}  // namespace gpt2q
