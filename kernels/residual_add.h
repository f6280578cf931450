// Residual add: x += delta, element-wise. x, delta [n].
#ifndef TESSERA_KERNELS_RESIDUAL_ADD_H_
#define TESSERA_KERNELS_RESIDUAL_ADD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"

namespace tessera {

struct ResidualAddArgs {
  void* x = nullptr;
  const void* delta = nullptr;
  DType dtype = DType::kF32;
  int64_t n = 0;
};

absl::Status ResidualAddCpu(const ResidualAddArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_RESIDUAL_ADD_H_
