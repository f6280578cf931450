// Residual add: x += delta, element-wise. x, delta [n].
#ifndef TESSERA_KERNELS_RESIDUAL_ADD_H_
#define TESSERA_KERNELS_RESIDUAL_ADD_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

struct ResidualAddArgs {
  float* x = nullptr;
  const float* delta = nullptr;
  int64_t n = 0;
};

absl::Status ResidualAddCpu(const ResidualAddArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_RESIDUAL_ADD_H_
