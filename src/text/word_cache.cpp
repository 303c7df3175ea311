#include "text/word_cache.h"

#include <bit>
#include <cstring>

namespace gpt2q::text {

uint64_t WordCache::hash(std::string_view word) {
  // Multiply-xorshift over 8-byte chunks: pieces are short, so speed per
  // call matters more than the last bit of distribution quality.
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t h = word.size() * kMul;
  size_t i = 0;
  for (; i + 8 <= word.size(); i += 8) {
    uint64_t chunk;
    std::memcpy(&chunk, word.data() + i, 8);
    h = (h ^ chunk) * kMul;
    h ^= h >> 29;
  }
  if (i < word.size()) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, word.data() + i, word.size() - i);
    h = (h ^ chunk) * kMul;
    h ^= h >> 29;
  }
  h = (h ^ (h >> 32)) * kMul;
  return h | 1;  // bit 0 is not used for the slot index (see home())
}

bool WordCache::find(std::string_view word, uint64_t h, std::span<const int32_t>* ids) const {
  if (slots_.empty()) return false;
  const size_t mask = slots_.size() - 1;
  for (size_t i = home(h);; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.tag == 0) return false;
    if (s.tag == static_cast<uint32_t>(h) && s.key_len == word.size() && std::memcmp(keys_.data() + s.key_off, word.data(), word.size()) == 0) {
      *ids = std::span<const int32_t>(ids_.data() + s.ids_off, s.ids_len);
      return true;
    }
  }
}

void WordCache::insert(std::string_view word, uint64_t h, std::span<const int32_t> ids) {
  if (word.size() > kMaxWordBytes || ids.size() > UINT16_MAX) return;
  if (used_ >= kMaxWords || keys_.size() >= kMaxKeyBytes) clear();
  if ((used_ + 1) * 2 > slots_.size()) grow();
  Slot s;
  s.tag = static_cast<uint32_t>(h);
  s.key_off = static_cast<uint32_t>(keys_.size());
  s.key_len = static_cast<uint16_t>(word.size());
  s.ids_off = static_cast<uint32_t>(ids_.size());
  s.ids_len = static_cast<uint16_t>(ids.size());
  keys_.append(word);
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  const size_t mask = slots_.size() - 1;
  size_t i = home(h);
  while (slots_[i].tag != 0) i = (i + 1) & mask;
  slots_[i] = s;
  ++used_;
}

void WordCache::clear() {
  slots_.clear();
  shift_ = 64;
  keys_.clear();
  ids_.clear();
  used_ = 0;
}

void WordCache::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 4096 : old.size() * 2, Slot{});
  shift_ = 64 - std::countr_zero(slots_.size());
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.tag == 0) continue;
    // Slots keep only half the hash; the key is at hand to recompute it.
    size_t i = home(hash(std::string_view(keys_.data() + s.key_off, s.key_len)));
    while (slots_[i].tag != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

}  // namespace gpt2q::text
