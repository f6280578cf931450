#include "common/dtype.h"

#include <limits>

namespace tessera {

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kI4: return "I4";
  }
  return "?";
}

const char* DeviceName(Device device) {
  switch (device) {
    case Device::kCpu: return "cpu";
    case Device::kCuda: return "cuda";
  }
  return "?";
}

std::optional<size_t> DTypeBytes(DType dtype, int64_t n) {
  if (n < 0) return std::nullopt;
  const uint64_t bits = static_cast<uint64_t>(DTypeBits(dtype));
  const uint64_t un = static_cast<uint64_t>(n);
  if (un > std::numeric_limits<uint64_t>::max() / bits) return std::nullopt;
  const uint64_t bytes = (un * bits + 7) / 8;
  if (bytes > std::numeric_limits<size_t>::max()) return std::nullopt;
  return static_cast<size_t>(bytes);
}

}  // namespace tessera
