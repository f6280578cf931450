#include "kernels/residual_add.h"

#include "kernels/cpu/thread_pool.h"

namespace tessera {

absl::Status ResidualAddCpu(const ResidualAddArgs& a, ThreadPool& pool) {
  if (!a.x || !a.delta || a.n < 0) return absl::InvalidArgumentError("ResidualAdd: bad arguments");
  pool.ParallelFor(a.n, 65536, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) a.x[i] += a.delta[i];
  });
  return absl::OkStatus();
}

}  // namespace tessera
