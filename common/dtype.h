// Element types and devices, shared by every layer that describes a tensor.
// Op arguments are `void*` + DType + dimensions (see kernels/exec.h); weight
// formats with their own scales (int8 per channel, int4 per group) are a
// WeightFormat on top of these.
#ifndef TESSERA_COMMON_DTYPE_H_
#define TESSERA_COMMON_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tessera {

enum class DType : uint8_t { kF32, kF16, kBF16, kI8, kU8, kI4 };
enum class Device : uint8_t { kCpu, kCuda };

// "F32", "F16", "BF16", "I8", "U8", "I4" (safetensors' spelling).
const char* DTypeName(DType dtype);
// "cpu", "cuda".
const char* DeviceName(Device device);

// Bits per element: 32, 16, 16, 8, 8, 4.
inline constexpr int DTypeBits(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 32;
    case DType::kF16:
    case DType::kBF16: return 16;
    case DType::kI8:
    case DType::kU8: return 8;
    case DType::kI4: return 4;
  }
  return 0;
}

// Bytes that n elements occupy (int4 rounds up to whole bytes); nullopt when
// n is negative or the product overflows.
std::optional<size_t> DTypeBytes(DType dtype, int64_t n);

}  // namespace tessera

#endif  // TESSERA_COMMON_DTYPE_H_
