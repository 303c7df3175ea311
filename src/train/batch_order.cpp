#include "train/batch_order.h"

#include <numeric>
#include <random>
#include <utility>

#include "model/synthetic_weights.h"

namespace gpt2q::train {

namespace {

// Uniform in [0, bound] by rejection: no modulo bias, and no dependence on a
// library's unspecified distribution algorithm.
uint64_t uniform_upto(std::mt19937_64& rng, uint64_t bound) {
  if (bound == UINT64_MAX) return rng();
  const uint64_t range = bound + 1;
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % range + 1) % range;
  uint64_t x;
  do x = rng();
  while (x > limit);
  return x % range;
}

}  // namespace

std::vector<size_t> seeded_permutation(size_t n, uint64_t seed) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[uniform_upto(rng, i - 1)]);
  return idx;
}

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  return seeded_permutation(n, splitmix64(seed) ^ static_cast<uint64_t>(epoch));
}

int64_t batches_per_epoch(size_t n, int64_t batch_size) {
  return (static_cast<int64_t>(n) + batch_size - 1) / batch_size;
}

}  // namespace gpt2q::train
