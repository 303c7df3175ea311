#pragma once
// Byte-level BPE merging, as HF tokenizers' BPE model does it: a word starts
// as one symbol per byte; the adjacent pair with the lowest merge rank
// (leftmost on ties) is merged, again and again, until no pair has a rank.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gpt2q::text {

class BpeModel {
 public:
  struct Merge {
    std::string left, right;  // spelled as in vocab.json (byte-unicode form)
    std::string where;        // "PATH:LINE" for errors
  };

  // `vocab` maps spelled tokens to ids. Merges are in rank order; a later
  // duplicate of a pair replaces the earlier one, as in HF. Errors name the
  // merge's `where`.
  BpeModel(const std::unordered_map<std::string, int32_t>& vocab, const std::vector<Merge>& merges);

  // Appends the ids of one pre-tokenized piece (raw bytes). Bytes with no
  // token of their own are dropped, as HF does when the model has no unk token.
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

  size_t num_merges() const { return num_merges_; }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t merged = 0;
  };
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  const Slot* lookup(int32_t a, int32_t b) const;
  void insert(int32_t a, int32_t b, int32_t rank, int32_t merged);

  int32_t byte_id_[256];
  // Open addressing on (left id, right id): the merge loop's hot lookup.
  std::vector<Slot> table_;
  int shift_ = 64;
  size_t num_merges_ = 0;
};

}  // namespace gpt2q::text
