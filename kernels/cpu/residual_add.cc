#include "kernels/residual_add.h"

#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/thread_pool.h"

namespace tessera {

absl::Status ResidualAddCpu(const ResidualAddArgs& a, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("ResidualAdd", a.dtype); !s.ok()) return s;
  if (!a.x || !a.delta || a.n < 0) return absl::InvalidArgumentError("ResidualAdd: bad arguments");
  float* x = static_cast<float*>(a.x);
  const float* delta = static_cast<const float*>(a.delta);
  ParallelFor(ctx, a.n, 65536, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] += delta[i];
  });
  return absl::OkStatus();
}

}  // namespace tessera
