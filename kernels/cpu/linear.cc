#include "kernels/linear.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vector_isa.h"

namespace tessera {

const char* WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return "none";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kInt4: return "int4";
  }
  return "?";
}

absl::Status LinearCpu(const LinearArgs& a, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("Linear", a.dtype); !s.ok()) return s;
  if (a.rows < 0 || a.in <= 0 || a.out <= 0 || !a.x || !a.weight || !a.y) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Linear: bad arguments rows=%d in=%d out=%d", a.rows, a.in, a.out));
  }
  if (a.format != WeightFormat::kF32 && !a.scales) return absl::InvalidArgumentError("Linear: missing scales");
  if (a.format == WeightFormat::kInt4 && (a.group_size <= 0 || a.group_size % 8 != 0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Linear: int4 group size %d must be a positive multiple of 8", a.group_size));
  }
  if (a.rows == 0) return absl::OkStatus();
  const VectorIsa& isa = ActiveIsa();
  const int64_t groups = a.format == WeightFormat::kInt4 ? (a.in + a.group_size - 1) / a.group_size : 0;
  const int64_t q_row_bytes = a.format == WeightFormat::kInt4 ? (a.in + 1) / 2 : a.in;
  // Split over output channels, at least ~64K multiply-adds per chunk so that
  // small layers are not split at all.
  const int64_t min_chunk = std::max<int64_t>(1, (int64_t{1} << 16) / (a.in * a.rows));
  const float* xs = static_cast<const float*>(a.x);
  float* ys = static_cast<float*>(a.y);
  ParallelFor(ctx, a.out, min_chunk, [&](int64_t o_begin, int64_t o_end) {
    float dots[kMaxDotRows];
    for (int64_t o = o_begin; o < o_end; ++o) {
      const float b = a.bias ? a.bias[o] : 0.0f;
      if (a.format == WeightFormat::kF32) {
        const float* w = static_cast<const float*>(a.weight) + o * a.in;
        for (int64_t r = 0; r < a.rows; ++r) ys[r * a.out + o] = isa.dot(xs + r * a.in, w, a.in) + b;
        continue;
      }
      // Quantized weights are unpacked on the fly, shared by up to
      // kMaxDotRows rows at a time.
      const uint8_t* q = static_cast<const uint8_t*>(a.weight) + o * q_row_bytes;
      for (int64_t r0 = 0; r0 < a.rows; r0 += kMaxDotRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kMaxDotRows, a.rows - r0));
        const float* x = xs + r0 * a.in;
        if (a.format == WeightFormat::kInt8) {
          isa.dot_int8_rows(x, a.in, rows, reinterpret_cast<const int8_t*>(q), a.scales[o], a.in, dots);
        } else {
          isa.dot_int4_rows(x, a.in, rows, q, a.scales + o * groups, a.group_size, a.in, dots);
        }
        for (int r = 0; r < rows; ++r) ys[(r0 + r) * a.out + o] = dots[r] + b;
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
