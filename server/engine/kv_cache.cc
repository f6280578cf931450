#include "server/engine/kv_cache.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace tessera {

KvCache::KvCache(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t num_kv_heads,
                 int32_t head_dim)
    : num_blocks_(num_blocks), block_size_(block_size) {
  const size_t floats = static_cast<size_t>(num_blocks) * block_size * num_kv_heads * head_dim;
  k_.assign(num_layers, std::vector<float>(floats));
  v_.assign(num_layers, std::vector<float>(floats));
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
  owner_.assign(static_cast<size_t>(num_blocks), kNoOwner);
}

absl::StatusOr<std::vector<int32_t>> KvCache::Allocate(int32_t n, uint64_t owner) {
  if (n > free_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache has ", free_blocks(), " free blocks, ", n, " needed"));
  }
  std::vector<int32_t> blocks(free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  for (int32_t b : blocks) owner_[b] = owner;
  return blocks;
}

void KvCache::Free(const std::vector<int32_t>& blocks, uint64_t owner) {
  for (int32_t b : blocks) {
    if (b < 0 || b >= num_blocks_ || owner_[b] != owner) {
      const std::string held = b < 0 || b >= num_blocks_ ? "out of range"
                               : owner_[b] == kNoOwner   ? "already free (double free)"
                                                         : absl::StrCat("held by sequence ", owner_[b]);
      spdlog::critical("CHECK failed: KV block {} freed by sequence {} is {}", b, owner, held);
      spdlog::default_logger()->flush();
      std::fprintf(stderr, "CHECK failed: KV block %d freed by sequence %llu is %s\n", b,
                   static_cast<unsigned long long>(owner), held.c_str());
      std::abort();
    }
    owner_[b] = kNoOwner;
  }
  free_.insert(free_.end(), blocks.rbegin(), blocks.rend());
}

}  // namespace tessera
