// Linear: y = x · Wᵀ (+ bias), with W stored as fp32, int8 or int4.
//   x [rows, in], y [rows, out] (must not alias x), bias [out] or null.
//   kF32:  weight float [out, in] (row-major, as HF stores nn.Linear).
//   kInt8: weight int8 [out, in]; scales [out]; W[o,i] = q[o,i] * scales[o].
//   kInt4: weight uint8 [out, ceil(in/2)], two values per byte along the
//          input dimension (even column in the low nibble, two's complement
//          in [-8, 7]); scales [out, ceil(in/group_size)];
//          W[o,i] = q[o,i] * scales[o, i / group_size]. The last group of a
//          row may be partial.
// Quantized weights are dequantized on the fly; activations stay fp32.
#ifndef TESSERA_KERNELS_LINEAR_H_
#define TESSERA_KERNELS_LINEAR_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"

namespace tessera {

enum class WeightFormat { kF32, kInt8, kInt4 };
const char* WeightFormatName(WeightFormat format);  // "none", "int8", "int4"

struct LinearArgs {
  const void* x = nullptr;
  DType dtype = DType::kF32;  // of x and y
  WeightFormat format = WeightFormat::kF32;
  const void* weight = nullptr;
  const float* scales = nullptr;  // kInt8, kInt4
  int32_t group_size = 0;         // kInt4: a positive multiple of 8
  const float* bias = nullptr;
  void* y = nullptr;
  int64_t rows = 0;
  int64_t in = 0;
  int64_t out = 0;
};

absl::Status LinearCpu(const LinearArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_LINEAR_H_
