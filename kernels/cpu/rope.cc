#include "kernels/rope.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/thread_pool.h"

namespace tessera {
namespace {

void RotateHeads(float* x, int32_t heads, int32_t head_dim, int32_t rotary_dims, const float* cos_v,
                 const float* sin_v) {
  const int32_t half = rotary_dims / 2;
  for (int32_t h = 0; h < heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      const float x1 = v[i];
      const float x2 = v[i + half];
      v[i] = x1 * cos_v[i] - x2 * sin_v[i];
      v[i + half] = x2 * cos_v[i] + x1 * sin_v[i];
    }
  }
}

}  // namespace

absl::Status RopeCpu(const RopeArgs& a, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("Rope", a.dtype); !s.ok()) return s;
  if (a.head_dim <= 0 || a.head_dim % 2 != 0 || a.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Rope: head_dim=%d must be even and at most %d", a.head_dim, kMaxHeadDim));
  }
  const int32_t rotary = a.rotary_dims == 0 ? a.head_dim : a.rotary_dims;
  if (rotary < 2 || rotary % 2 != 0 || rotary > a.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Rope: rotary_dims=%d must be even and in [2, head_dim=%d]", rotary, a.head_dim));
  }
  if (!a.q || !a.k || !a.positions || !a.inv_freq) {
    return absl::InvalidArgumentError("Rope: null argument");
  }
  float* q = static_cast<float*>(a.q);
  float* k = static_cast<float*>(a.k);
  ParallelFor(ctx, a.rows, 4, [&](int64_t begin, int64_t end) {
    float cos_v[kMaxHeadDim / 2];
    float sin_v[kMaxHeadDim / 2];
    const int32_t half = rotary / 2;
    for (int64_t r = begin; r < end; ++r) {
      const double pos = static_cast<double>(a.positions[r]);
      for (int32_t i = 0; i < half; ++i) {
        const double angle = pos * static_cast<double>(a.inv_freq[i]);
        cos_v[i] = static_cast<float>(std::cos(angle)) * a.attention_scaling;
        sin_v[i] = static_cast<float>(std::sin(angle)) * a.attention_scaling;
      }
      RotateHeads(q + r * a.num_q_heads * a.head_dim, a.num_q_heads, a.head_dim, rotary, cos_v, sin_v);
      RotateHeads(k + r * a.num_kv_heads * a.head_dim, a.num_kv_heads, a.head_dim, rotary, cos_v, sin_v);
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
