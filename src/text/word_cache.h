#pragma once
// BPE results per pre-tokenized piece. Natural text repeats its words, so
// after warm-up almost every piece costs one lookup here. Open addressing
// over flat arrays: keys live in one byte arena and ids in one pool, so a
// hit touches a slot and two contiguous spans, and an insert allocates
// nothing once the arrays have grown.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gpt2q::text {

class WordCache {
 public:
  static constexpr size_t kMaxWordBytes = 255;  // longer pieces are rare; not kept
  static constexpr size_t kMaxWords = size_t{1} << 18;
  static constexpr size_t kMaxKeyBytes = size_t{1} << 24;

  static uint64_t hash(std::string_view word);

  // The cached ids of `word` (whose hash is `h`) into *ids; false if absent.
  bool find(std::string_view word, uint64_t h, std::span<const int32_t>* ids) const;
  // Starts loading the slot `find(.., h, ..)` will read first.
  void prefetch(uint64_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[home(h)]);
  }
  // Keeps ids for `word` (not already present). Starts over when full, which
  // bounds memory on endless unseen text at the cost of re-running BPE.
  void insert(std::string_view word, uint64_t h, std::span<const int32_t> ids);
  void clear();
  size_t size() const { return used_; }

 private:
  // 16 bytes: the table is the part of a lookup that misses the CPU cache.
  struct Slot {
    uint32_t tag = 0;  // low half of the hash; 0 marks an empty slot (hash() is odd)
    uint32_t key_off = 0, ids_off = 0;
    uint16_t key_len = 0, ids_len = 0;
  };
  void grow();
  // High bits of the hash pick the slot: they are the best mixed.
  size_t home(uint64_t h) const { return static_cast<size_t>(h >> shift_); }

  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t used_ = 0;
  int shift_ = 64;
};

}  // namespace gpt2q::text
