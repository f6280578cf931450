// Linear: y = x · Wᵀ (+ bias).
//   x [rows, in], weight [out, in] (row-major, as HF stores nn.Linear),
//   bias [out] or null, y [rows, out]. y must not alias x.
#ifndef TESSERA_KERNELS_LINEAR_H_
#define TESSERA_KERNELS_LINEAR_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

struct LinearArgs {
  const float* x = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t rows = 0;
  int64_t in = 0;
  int64_t out = 0;
};

absl::Status LinearCpu(const LinearArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_LINEAR_H_
