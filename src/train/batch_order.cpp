#include "train/batch_order.h"

#include <numeric>
#include <random>

#include "core/seeded_shuffle.h"
#include "core/splitmix64.h"

namespace gpt2q::train {

std::vector<size_t> seeded_permutation(size_t n, uint64_t seed) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::mt19937_64 rng(seed);
  fisher_yates_shuffle(idx, rng);
  return idx;
}

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  return seeded_permutation(n, splitmix64(seed) ^ static_cast<uint64_t>(epoch));
}

int64_t batches_per_epoch(size_t n, int64_t batch_size) {
  return (static_cast<int64_t>(n) + batch_size - 1) / batch_size;
}

}  // namespace gpt2q::train
