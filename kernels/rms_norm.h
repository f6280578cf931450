// RMSNorm: y = x / sqrt(mean(x²) + eps) * weight, per row.
//   x [rows, dim], weight [dim], y [rows, dim]; y may alias x.
#ifndef TESSERA_KERNELS_RMS_NORM_H_
#define TESSERA_KERNELS_RMS_NORM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"

namespace tessera {

struct RmsNormArgs {
  const void* x = nullptr;
  const float* weight = nullptr;
  void* y = nullptr;
  DType dtype = DType::kF32;  // of x and y
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-5f;
};

absl::Status RmsNormCpu(const RmsNormArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_RMS_NORM_H_
