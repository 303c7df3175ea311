#include "text/tokenizer.h"

#include <algorithm>
#include <atomic>

#include "core/error.h"
#include "text/byte_unicode.h"
#include "text/tokenizer_impl.h"
#include "text/utf8.h"
#include "text/word_cache.h"

namespace gpt2q {
namespace {

std::atomic<uint64_t> next_serial{1};

// The word cache is per thread (encode() is const and may run on several
// threads) and serves one tokenizer at a time, told apart by serial number.
text::WordCache& thread_cache(uint64_t serial) {
  thread_local text::WordCache cache;
  thread_local uint64_t owner = 0;
  if (owner != serial) {
    cache.clear();
    owner = serial;
  }
  return cache;
}

}  // namespace

Tokenizer::Impl::Impl(const std::unordered_map<std::string, int32_t>& vocab,
                      const std::vector<text::BpeModel::Merge>& merges, std::vector<AddedToken> added_tokens,
                      const std::string& source)
    : bpe(vocab, merges), added(std::move(added_tokens)), serial(next_serial++) {
  if (vocab.empty()) fail("{}: empty vocabulary", source);
  int32_t max_id = 0;
  for (auto& [tok, id] : vocab) max_id = std::max(max_id, id);
  for (auto& a : added) max_id = std::max(max_id, a.id);
  // Decode indexes a table by id; refuse ids so sparse that it would not fit.
  if (static_cast<size_t>(max_id) > 16 * (vocab.size() + added.size()) + 1024)
    fail("{}: token ids go up to {} for only {} tokens", source, max_id, vocab.size() + added.size());
  id_bytes.assign(static_cast<size_t>(max_id) + 1, {});
  id_known.assign(static_cast<size_t>(max_id) + 1, 0);
  // HF's ByteLevel decoder maps a token back through the byte map when every
  // character is in it, else emits the token's own UTF-8.
  const auto& map = text::ByteUnicodeMap::get();
  auto set = [&](const std::string& tok, int32_t id) {
    auto bytes = map.token_to_bytes(tok);
    id_bytes[id] = bytes ? std::move(*bytes) : tok;
    id_known[id] = 1;
  };
  for (auto& [tok, id] : vocab) set(tok, id);
  for (auto& a : added) {
    if (a.content.empty()) fail("{}: added token {} is empty", source, a.id);
    set(a.content, a.id);
    if (a.content == "<|endoftext|>") eos = a.id;
  }
  if (eos < 0) fail("{}: no <|endoftext|> token", source);
  std::stable_sort(added.begin(), added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
}

void Tokenizer::Impl::encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
  text::WordCache& cache = thread_cache(serial);
  // Pieces go through the cache in batches: hashing a batch and prefetching
  // its slots first overlaps the cache misses that dominate a lookup.
  constexpr int kBatch = 16;
  std::string_view pieces[kBatch];
  uint64_t hashes[kBatch];
  int n = 0;
  auto flush = [&] {
    for (int i = 0; i < n; ++i) {
      std::span<const int32_t> hit;
      if (cache.find(pieces[i], hashes[i], &hit)) {
        out.insert(out.end(), hit.begin(), hit.end());
        continue;
      }
      const size_t start = out.size();
      bpe.encode_word(pieces[i], out);
      cache.insert(pieces[i], hashes[i], std::span<const int32_t>(out).subspan(start));
    }
    n = 0;
  };
  pre.split(text, [&](std::string_view piece) {
    pieces[n] = piece;
    hashes[n] = text::WordCache::hash(piece);
    cache.prefetch(hashes[n]);
    if (++n == kBatch) flush();
  });
  flush();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, std::string_view source) const {
  size_t bad = 0;
  if (!valid_utf8(text, &bad)) fail("{}: invalid UTF-8 at byte {}", source, bad);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  // Added tokens split the text first, leftmost match, longest on ties (HF).
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos;
    const Impl::AddedToken* hit = nullptr;
    for (const auto& a : impl_->added) {
      size_t at = text.find(a.content, pos);
      if (at < best) {
        best = at;
        hit = &a;
      }
    }
    impl_->encode_ordinary(text.substr(pos, best == std::string_view::npos ? best : best - pos), out);
    if (!hit) break;
    out.push_back(hit->id);
    pos = best + hit->content.size();
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_known.size() || !impl_->id_known[id])
      fail("decode: token id {} is not in the vocabulary (size {})", id, vocab_size());
    bytes += impl_->id_bytes[id];
  }
  return text::utf8_lossy(bytes);
}

int32_t Tokenizer::eos_id() const { return impl_->eos; }
int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_known.size()); }

}  // namespace gpt2q
