#include "text/bpe.h"

#include <algorithm>
#include <bit>
#include <climits>

#include "core/error.h"
#include "text/byte_unicode.h"

namespace gpt2q::text {

BpeModel::BpeModel(const std::unordered_map<std::string, int32_t>& vocab, const std::vector<Merge>& merges) {
  const auto& map = ByteUnicodeMap::get();
  for (int b = 0; b < 256; ++b) {
    const char byte = static_cast<char>(b);
    std::string spelled = map.bytes_to_token(std::string_view(&byte, 1));
    auto it = vocab.find(spelled);
    byte_id_[b] = it == vocab.end() ? -1 : it->second;
  }

  size_t cap = 16;
  while (cap < merges.size() * 2) cap <<= 1;
  table_.assign(cap, Slot{});
  shift_ = 64 - std::countr_zero(cap);

  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    auto a = vocab.find(m.left), b = vocab.find(m.right);
    if (a == vocab.end() || b == vocab.end())
      fail("{}: merge '{} {}' names a token that is not in the vocabulary", m.where, m.left, m.right);
    joined = m.left;
    joined += m.right;
    auto merged = vocab.find(joined);
    if (merged == vocab.end())
      fail("{}: merge '{} {}' makes '{}', which is not in the vocabulary", m.where, m.left, m.right, joined);
    insert(a->second, b->second, static_cast<int32_t>(rank), merged->second);
  }
  num_merges_ = merges.size();
}

const BpeModel::Slot* BpeModel::lookup(int32_t a, int32_t b) const {
  const uint64_t key = pair_key(a, b);
  const size_t mask = table_.size() - 1;
  for (size_t i = slot_of(key);; i = (i + 1) & mask) {
    const Slot& s = table_[i];
    if (s.key == key) return &s;
    if (s.key == kEmpty) return nullptr;
  }
}

void BpeModel::insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
  const uint64_t key = pair_key(a, b);
  const size_t mask = table_.size() - 1;
  for (size_t i = slot_of(key);; i = (i + 1) & mask) {
    Slot& s = table_[i];
    if (s.key == kEmpty || s.key == key) {
      s = Slot{key, rank, merged};
      return;
    }
  }
}

namespace {

struct Symbol {
  int32_t id;  // -1 once merged into its left neighbour
  int32_t prev, next;
};

// A candidate merge of the symbol at `pos` with its right neighbour, as
// rank << 32 | pos: one integer, so that the heap orders by (rank, pos) with
// one comparison and a huge piece's heap takes 8 bytes per entry. A rank
// names one pair (the table keeps one rank per pair), so a candidate is
// still valid iff its symbols' pair still has its rank.
using Candidate = uint64_t;
Candidate candidate(int32_t rank, int32_t pos) {
  return static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32 | static_cast<uint32_t>(pos);
}

}  // namespace

// The classic O(n log n) merge loop (HF tokenizers' Word::merge_all,
// tiktoken): symbols in a doubly linked list over an array, candidate pairs
// in a min-heap by (rank, position), stale candidates skipped when popped.
// Memory is linear: 12 bytes per symbol, and at most 2 heap entries per
// byte (n - 1 pairs at the start, at most 2 new ones per merge, n - 1 merges).
void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.size() == 1) {
    int32_t id = byte_id_[static_cast<unsigned char>(bytes[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  if (bytes.size() > static_cast<size_t>(INT32_MAX))
    fail("pre-tokenized piece of {} bytes is too long for BPE", bytes.size());
  thread_local std::vector<Symbol> syms;
  thread_local std::vector<Candidate> heap;
  syms.clear();
  heap.clear();
  for (unsigned char c : bytes) {
    int32_t id = byte_id_[c];
    if (id < 0) continue;
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1});
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  auto rank_at = [&](int32_t pos) -> const Slot* {
    const Symbol& l = syms[pos];
    return l.next < 0 ? nullptr : lookup(l.id, syms[l.next].id);
  };
  auto push_pair = [&](int32_t pos) {
    if (pos < 0) return;
    if (const Slot* s = rank_at(pos)) {
      heap.push_back(candidate(s->rank, pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i)
    if (const Slot* s = rank_at(i)) heap.push_back(candidate(s->rank, i));
  std::make_heap(heap.begin(), heap.end(), std::greater<>());  // O(n), not n pushes

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    const auto pos = static_cast<int32_t>(c & 0xffffffffu);
    const auto rank = static_cast<int32_t>(c >> 32);
    Symbol& l = syms[pos];
    if (l.id < 0) continue;  // merged away
    const Slot* s = rank_at(pos);
    if (!s || s->rank != rank) continue;  // its pair changed since
    Symbol& r = syms[l.next];
    l.id = s->merged;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = pos;
    r.id = -1;
    push_pair(l.prev);
    push_pair(pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
  // A giant piece leaves buffers of its size behind in this thread; give them back.
  if (syms.capacity() > (size_t{1} << 16)) {
    std::vector<Symbol>().swap(syms);
    std::vector<Candidate>().swap(heap);
  }
}

}  // namespace gpt2q::text
