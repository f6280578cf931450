#include "server/engine/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace tessera {

KvCache::KvCache(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t num_kv_heads,
                 int32_t head_dim)
    : num_blocks_(num_blocks), block_size_(block_size) {
  const size_t floats = static_cast<size_t>(num_blocks) * block_size * num_kv_heads * head_dim;
  k_.assign(num_layers, std::vector<float>(floats));
  v_.assign(num_layers, std::vector<float>(floats));
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<std::vector<int32_t>> KvCache::Allocate(int32_t n) {
  if (n > free_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache has ", free_blocks(), " free blocks, ", n, " needed"));
  }
  std::vector<int32_t> blocks(free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  return blocks;
}

void KvCache::Free(const std::vector<int32_t>& blocks) {
  free_.insert(free_.end(), blocks.rbegin(), blocks.rend());
}

}  // namespace tessera
