#include "kernels/linear.h"

#include <vector>

#include "absl/strings/str_format.h"
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

absl::Status LinearCpu(const LinearArgs& a, ThreadPool& pool) {
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
  // Split over output channels: each weight row is read (and dequantized)
  // once per call and reused for every row of x.
  const int64_t min_chunk = std::max<int64_t>(1, 4096 / a.in);
  pool.ParallelFor(a.out, min_chunk, [&](int64_t o_begin, int64_t o_end) {
    thread_local std::vector<float> dequantized;
    if (a.format != WeightFormat::kF32 && static_cast<int64_t>(dequantized.size()) < a.in) {
      dequantized.resize(a.in);
    }
    for (int64_t o = o_begin; o < o_end; ++o) {
      const float* w = nullptr;
      switch (a.format) {
        case WeightFormat::kF32:
          w = static_cast<const float*>(a.weight) + o * a.in;
          break;
        case WeightFormat::kInt8:
          isa.dequant_int8(static_cast<const int8_t*>(a.weight) + o * a.in, a.scales[o], dequantized.data(), a.in);
          w = dequantized.data();
          break;
        case WeightFormat::kInt4:
          isa.dequant_int4(static_cast<const uint8_t*>(a.weight) + o * ((a.in + 1) / 2), a.scales + o * groups,
                           a.group_size, dequantized.data(), a.in);
          w = dequantized.data();
          break;
      }
      const float b = a.bias ? a.bias[o] : 0.0f;
      for (int64_t r = 0; r < a.rows; ++r) a.y[r * a.out + o] = isa.dot(a.x + r * a.in, w, a.in) + b;
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
