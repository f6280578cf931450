#include "common/device_buffer.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace {

class HostAllocatorImpl final : public Allocator {
 public:
  Device device() const override { return Device::kCpu; }
  absl::StatusOr<void*> Allocate(size_t bytes, size_t alignment) override {
    if (bytes == 0) return nullptr;
    // aligned_alloc wants a size that is a multiple of the alignment.
    const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = rounded < bytes ? nullptr : std::aligned_alloc(alignment, rounded);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes of host memory"));
    }
    return p;
  }
  void Free(void* ptr) override { std::free(ptr); }
};

}  // namespace

Allocator& HostAllocator() {
  static HostAllocatorImpl* allocator = new HostAllocatorImpl();
  return *allocator;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(Allocator& allocator, size_t bytes) {
  absl::StatusOr<void*> p = allocator.Allocate(bytes, kAlignment);
  if (!p.ok()) return p.status();
  DeviceBuffer b;
  b.allocator_ = &allocator;
  b.data_ = *p;
  b.bytes_ = bytes;
  return b;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    allocator_ = std::exchange(other.allocator_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::Reset() {
  if (data_ != nullptr) allocator_->Free(data_);
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace tessera
