// The KV cache's memory: one allocation in the backend's memory holding, per
// layer, K and V pages of [num_blocks, block_size, num_kv_heads, head_dim]
// elements of the KV dtype (FlashInfer's paged NHD layout). Which sequence
// owns which page is the scheduler's KvBlockManager's business.
//
// Thread safety: none; owned by the engine.
#ifndef TESSERA_SERVER_ENGINE_KV_STORAGE_H_
#define TESSERA_SERVER_ENGINE_KV_STORAGE_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "common/device_buffer.h"
#include "common/dtype.h"

namespace tessera {

struct KvShape {
  int32_t num_layers = 0;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  DType dtype = DType::kF32;
};

class KvStorage {
 public:
  // Bytes of the whole cache; nullopt when the shape overflows.
  static std::optional<size_t> Bytes(const KvShape& shape);
  // Allocates and zeroes the pages. InvalidArgument for a bad shape,
  // ResourceExhausted (with the size) when the memory is not there.
  static absl::StatusOr<KvStorage> Create(const KvShape& shape, Allocator& allocator);

  void* k(int32_t layer) const { return Page(layer, 0); }
  void* v(int32_t layer) const { return Page(layer, 1); }
  const KvShape& shape() const { return shape_; }
  size_t bytes() const { return buffer_.bytes(); }

 private:
  void* Page(int32_t layer, int kv) const {
    return static_cast<char*>(buffer_.data()) + (static_cast<size_t>(layer) * 2 + kv) * layer_half_bytes_;
  }

  KvShape shape_;
  size_t layer_half_bytes_ = 0;  // K (or V) of one layer
  DeviceBuffer buffer_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_ENGINE_KV_STORAGE_H_
