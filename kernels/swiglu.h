// SwiGLU activation: out = silu(gate) * up, element-wise.
//   gate, up, out [n]; out may alias gate.
#ifndef TESSERA_KERNELS_SWIGLU_H_
#define TESSERA_KERNELS_SWIGLU_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"

namespace tessera {

struct SwiGluArgs {
  const void* gate = nullptr;
  const void* up = nullptr;
  void* out = nullptr;
  DType dtype = DType::kF32;
  int64_t n = 0;
};

absl::Status SwiGluCpu(const SwiGluArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_SWIGLU_H_
