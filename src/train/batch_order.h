#pragma once
// Which examples each optimizer step sees. Epoch e visits the examples in a
// permutation that is a pure function of (seed, e), so a resumed run needs no
// generator state: it recomputes the epoch's order and skips the batches
// already done. The permutation is portable by construction, like
// io/dataset.h's stratified_split: std::mt19937_64(splitmix64(seed) ^ e)
// drives a Fisher-Yates shuffle (i from n-1 down to 1 swaps i with a uniform
// j in [0, i], drawn by rejection from whole 64-bit outputs).
// Batches are consecutive slices of batch_size; the last one may be short
// (HF's default, dataloader_drop_last = False).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gpt2q::train {

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);
// A seeded permutation of 0..n-1 (the same shuffle, for other uses such as
// choosing held-out LM blocks).
std::vector<size_t> seeded_permutation(size_t n, uint64_t seed);
int64_t batches_per_epoch(size_t n, int64_t batch_size);

}  // namespace gpt2q::train
