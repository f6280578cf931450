// RMSNorm: y = x / sqrt(mean(x²) + eps) * weight, per row.
//   x [rows, dim], weight [dim], y [rows, dim]; y may alias x.
#ifndef TESSERA_KERNELS_RMS_NORM_H_
#define TESSERA_KERNELS_RMS_NORM_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

struct RmsNormArgs {
  const float* x = nullptr;
  const float* weight = nullptr;
  float* y = nullptr;
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-5f;
};

absl::Status RmsNormCpu(const RmsNormArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_RMS_NORM_H_
