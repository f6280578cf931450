#include "server/engine/kv_storage.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace tessera {

std::optional<size_t> KvStorage::Bytes(const KvShape& s) {
  if (s.num_layers < 1 || s.num_blocks < 1 || s.block_size < 1 || s.num_kv_heads < 1 || s.head_dim < 1) {
    return std::nullopt;
  }
  int64_t elements = 0;
  if (__builtin_mul_overflow(int64_t{s.num_blocks}, int64_t{s.block_size}, &elements) ||
      __builtin_mul_overflow(elements, int64_t{s.num_kv_heads} * s.head_dim, &elements)) {
    return std::nullopt;
  }
  const std::optional<size_t> half = DTypeBytes(s.dtype, elements);
  size_t total = 0;
  if (!half || __builtin_mul_overflow(*half, size_t{2} * static_cast<size_t>(s.num_layers), &total)) {
    return std::nullopt;
  }
  return total;
}

absl::StatusOr<KvStorage> KvStorage::Create(const KvShape& shape, Allocator& allocator) {
  const std::optional<size_t> bytes = Bytes(shape);
  if (!bytes) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache of ", shape.num_blocks, " blocks of ", shape.block_size,
                                                   " tokens does not fit in memory's address space"));
  }
  KvStorage s;
  s.shape_ = shape;
  s.layer_half_bytes_ = *bytes / (size_t{2} * shape.num_layers);
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(allocator, *bytes);
  if (!buffer.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate the KV cache (", *bytes / 1048576.0,
                                                     " MiB): ", buffer.status().message(),
                                                     "; lower --kv-cache-tokens or --kv-cache-memory-fraction"));
  }
  s.buffer_ = *std::move(buffer);
  if (allocator.device() == Device::kCpu) std::memset(s.buffer_.data(), 0, *bytes);
  return s;
}

}  // namespace tessera
