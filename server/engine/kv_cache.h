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

  // Takes n blocks off the free list; ResourceExhausted when too few are free.
  absl::StatusOr<std::vector<int32_t>> Allocate(int32_t n);
  // Returns blocks to the free list.
  void Free(const std::vector<int32_t>& blocks);

 private:
  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<std::vector<float>> k_;
  std::vector<std::vector<float>> v_;
  std::vector<int32_t> free_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_ENGINE_KV_CACHE_H_
