#include "kernels/swiglu.h"

#include <cmath>

#include "kernels/cpu/thread_pool.h"

namespace tessera {

absl::Status SwiGluCpu(const SwiGluArgs& a, ThreadPool& pool) {
  if (!a.gate || !a.up || !a.out || a.n < 0) {
    return absl::InvalidArgumentError("SwiGlu: bad arguments");
  }
  pool.ParallelFor(a.n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = a.gate[i];
      a.out[i] = g / (1.0f + std::exp(-g)) * a.up[i];
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
