// SwiGLU activation: out = silu(gate) * up, element-wise.
//   gate, up, out [n]; out may alias gate.
#ifndef TESSERA_KERNELS_SWIGLU_H_
#define TESSERA_KERNELS_SWIGLU_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

struct SwiGluArgs {
  const float* gate = nullptr;
  const float* up = nullptr;
  float* out = nullptr;
  int64_t n = 0;
};

absl::Status SwiGluCpu(const SwiGluArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_SWIGLU_H_
