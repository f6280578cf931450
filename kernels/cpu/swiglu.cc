#include "kernels/swiglu.h"

#include <cmath>

#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/thread_pool.h"

namespace tessera {

absl::Status SwiGluCpu(const SwiGluArgs& a, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("SwiGlu", a.dtype); !s.ok()) return s;
  if (!a.gate || !a.up || !a.out || a.n < 0) {
    return absl::InvalidArgumentError("SwiGlu: bad arguments");
  }
  const float* gate = static_cast<const float*>(a.gate);
  const float* up = static_cast<const float*>(a.up);
  float* out = static_cast<float*>(a.out);
  ParallelFor(ctx, a.n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
