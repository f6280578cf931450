// Memory that a backend's ops read and write: an Allocator interface (host
// memory here; the CUDA backend adds device and pinned-host allocators) and
// DeviceBuffer, which owns one allocation.
//
// Thread safety: HostAllocator() is thread-safe. A DeviceBuffer is a value
// owned by one object; it is not shared.
#ifndef TESSERA_COMMON_DEVICE_BUFFER_H_
#define TESSERA_COMMON_DEVICE_BUFFER_H_

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace tessera {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // At least `bytes` bytes aligned to `alignment` (a power of two);
  // ResourceExhausted when the memory is not there. bytes == 0 gives nullptr.
  virtual absl::StatusOr<void*> Allocate(size_t bytes, size_t alignment) = 0;
  virtual void Free(void* ptr) = 0;
};

// 64-byte aligned host memory (a cache line; every AVX-512 load aligned).
Allocator& HostAllocator();

class DeviceBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(Allocator& allocator, size_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Reset(); }

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  Device device() const { return allocator_ ? allocator_->device() : Device::kCpu; }
  void Reset();

 private:
  Allocator* allocator_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_DEVICE_BUFFER_H_
