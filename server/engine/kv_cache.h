// Paged KV cache of the CPU backend: per layer, K and V pools of
// [num_blocks, block_size, num_kv_heads, head_dim] floats, and the free list of
// blocks shared by all layers.
//
// Thread safety: none; owned and used by the engine thread only.
#ifndef TESSERA_SERVER_ENGINE_KV_CACHE_H_
#define TESSERA_SERVER_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

class KvCache {
 public:
  KvCache(int32_t num_layers, int32_t num_blocks, int32_t block_size, int32_t num_kv_heads, int32_t head_dim);

  float* k(int32_t layer) { return k_[layer].data(); }
  float* v(int32_t layer) { return v_[layer].data(); }

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t free_blocks() const { return static_cast<int32_t>(free_.size()); }
  int32_t BlocksFor(int64_t tokens) const {
    return static_cast<int32_t>((tokens + block_size_ - 1) / block_size_);
  }

  // Takes n blocks off the free list for `owner` (a sequence's id, not
  // kNoOwner); ResourceExhausted when too few are free.
  absl::StatusOr<std::vector<int32_t>> Allocate(int32_t n, uint64_t owner = 0);
  // Returns owner's blocks to the free list. Freeing a block that is free
  // (a double free) or that another owner holds is memory corruption in the
  // making: it CHECK-fails (logs and aborts) instead of serving one
  // sequence's cache to another.
  void Free(const std::vector<int32_t>& blocks, uint64_t owner = 0);

  static constexpr uint64_t kNoOwner = ~uint64_t{0};

 private:
  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<std::vector<float>> k_;
  std::vector<std::vector<float>> v_;
  std::vector<int32_t> free_;
  std::vector<uint64_t> owner_;  // per block; kNoOwner when free
};

}  // namespace tessera

#endif  // TESSERA_SERVER_ENGINE_KV_CACHE_H_
