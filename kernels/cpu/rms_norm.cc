#include "kernels/rms_norm.h"

#include <cmath>

#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/thread_pool.h"

namespace tessera {

absl::Status RmsNormCpu(const RmsNormArgs& a, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("RmsNorm", a.dtype); !s.ok()) return s;
  if (a.rows < 0 || a.dim <= 0 || !a.x || !a.weight || !a.y) {
    return absl::InvalidArgumentError("RmsNorm: bad arguments");
  }
  ParallelFor(ctx, a.rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = static_cast<const float*>(a.x) + r * a.dim;
      float* y = static_cast<float*>(a.y) + r * a.dim;
      double sum_sq = 0;
      for (int64_t i = 0; i < a.dim; ++i) sum_sq += double{x[i]} * x[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(sum_sq / a.dim) + a.eps);
      for (int64_t i = 0; i < a.dim; ++i) y[i] = a.weight[i] * (x[i] * inv);
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
