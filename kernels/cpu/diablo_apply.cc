#include "kernels/diablo_apply.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "kernels/cpu/segment_rows.h"

namespace tessera {

absl::Status DiabloApplyCpu(const DiabloApplyArgs& args, ThreadPool& pool) {
  int64_t max_work = 1;
  for (int32_t s = 0; s < args.num_segments; ++s) {
    const DiabloSegment& seg = args.segments[s];
    if (!seg.block || seg.blocks < 1 || seg.d1 < 1 || seg.d2 < 1 || int64_t{seg.blocks} * seg.d1 < args.in ||
        int64_t{seg.blocks} * seg.d2 < args.out) {
      return absl::InvalidArgumentError(
          absl::StrFormat("DiabloApply: segment %d with %d blocks of %dx%d does not cover in=%d out=%d", s,
                          seg.blocks, seg.d1, seg.d2, args.in, args.out));
    }
    max_work = std::max<int64_t>(max_work, int64_t{seg.blocks} * seg.d1 * seg.d2);
  }
  ForEachSegmentRow(args.segments, args.num_segments, max_work, pool, [&](int32_t s, int64_t row) {
    const DiabloSegment& seg = args.segments[s];
    const float* x = args.x + row * args.in;
    float* y = args.y + row * args.out;
    for (int32_t b = 0; b < seg.blocks; ++b) {
      const int64_t in0 = int64_t{b} * seg.d1, out0 = int64_t{b} * seg.d2;
      const int64_t jn = std::clamp<int64_t>(args.in - in0, 0, seg.d1);
      const int64_t on = std::clamp<int64_t>(args.out - out0, 0, seg.d2);
      const float* blk = seg.block + int64_t{b} * seg.d1 * seg.d2;
      for (int64_t j = 0; j < jn; ++j) {
        const float xj = x[in0 + j];
        const float* w = blk + j * seg.d2;
        for (int64_t o = 0; o < on; ++o) y[out0 + o] += xj * w[o];
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
