#include "kernels/road_apply.h"

#include "absl/strings/str_format.h"

namespace tessera {

absl::Status RoadApplyCpu(const RoadApplyArgs& args) {
  for (int32_t si = 0; si < args.num_segments; ++si) {
    const RoadSegment& seg = args.segments[si];
    if (!seg.c || !seg.s || seg.group < 2 || seg.group % 2 != 0 || args.out % seg.group != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("RoadApply: segment %d has group %d for out=%d", si, seg.group, args.out));
    }
    const int64_t h = seg.group / 2;
    for (int32_t i = 0; i < seg.row_count; ++i) {
      float* y = args.y + int64_t{seg.row_begin + i} * args.out;
      for (int64_t g = 0; g < args.out; g += seg.group) {
        for (int64_t j = 0; j < h; ++j) {
          const int64_t a = g + j, b = a + h;
          const float ya = y[a], yb = y[b];
          y[a] = seg.c[a] * ya + seg.s[a] * yb;
          y[b] = seg.c[b] * yb + seg.s[b] * ya;
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
