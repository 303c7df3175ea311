// Activation buffers for the forward pass, from a small caching allocator.
// Tensor::empty zero-fills fresh memory, and glibc hands chunks above its mmap
// threshold (at most 32 MiB) back to the kernel on free, so every forward
// would fault its big buffers in again page by page. On the VMs we measured,
// first touch costs ~1.4 s per GiB against ~0.1 s for a pass over memory
// already mapped: for the [rows, vocab] logits of a batch that is most of the
// cost of the forward. Big blocks are therefore kept on release and handed
// out again to later requests of a similar size.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/tensor.h"

namespace gpt2q::cpu {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kCacheFrom = size_t{1} << 20;     // smaller blocks: plain malloc/free
constexpr size_t kCacheLimit = size_t{4} << 30;   // bytes kept idle at most

class BlockCache {
 public:
  // A cached block of at least `bytes` but not wastefully larger, with its
  // capacity; {nullptr, 0} when there is none.
  std::pair<void*, size_t> take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.lower_bound(bytes);
    if (it == idle_.end() || it->first > 2 * bytes) return {nullptr, 0};
    std::pair<void*, size_t> block{it->second, it->first};
    idle_bytes_ -= it->first;
    idle_.erase(it);
    return block;
  }
  void give(void* p, size_t bytes) {
    std::unique_lock<std::mutex> lock(mu_);
    if (idle_bytes_ + bytes > kCacheLimit) {
      lock.unlock();
      std::free(p);
      return;
    }
    idle_.emplace(bytes, p);
    idle_bytes_ += bytes;
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [bytes, p] : idle_) std::free(p);
    idle_.clear();
    idle_bytes_ = 0;
  }
  size_t idle_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return idle_bytes_;
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> idle_;  // capacity -> block
  size_t idle_bytes_ = 0;
};

// Never destroyed: tensors released during static destruction still find it.
BlockCache& cache() {
  static BlockCache* c = new BlockCache();
  return *c;
}

}  // namespace

Tensor scratch_tensor(const Shape& shape, DType dtype) {
  for (int64_t d : shape) GPT2Q_CHECK(d >= 0, "negative dimension in {}", shape_str(shape));
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  std::shared_ptr<void> owner;
  void* p = nullptr;
  if (bytes >= kCacheFrom) {
    auto [block, capacity] = cache().take(bytes);
    if (!block) {
      // Capacities in 1 MiB steps so that similar requests share blocks.
      capacity = (bytes + kCacheFrom - 1) / kCacheFrom * kCacheFrom;
      block = std::aligned_alloc(kAlign, capacity);
      if (!block) fail("out of memory allocating {} bytes", bytes);
    }
    p = block;
    owner = std::shared_ptr<void>(p, [capacity = capacity](void* q) { cache().give(q, capacity); });
  } else {
    const size_t rounded = std::max(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    p = std::aligned_alloc(kAlign, rounded);
    if (!p) fail("out of memory allocating {} bytes", bytes);
    owner = std::shared_ptr<void>(p, std::free);
  }
  return Tensor::from_storage(Storage::borrow(p, bytes, std::move(owner), Device::CPU), 0, shape, dtype);
}

void release_scratch_cache() { cache().release_all(); }
size_t scratch_cache_bytes() { return cache().idle_bytes(); }

}  // namespace gpt2q::cpu
