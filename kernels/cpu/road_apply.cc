#include "kernels/road_apply.h"

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/segment_rows.h"

namespace tessera {

absl::Status RoadApplyCpu(const RoadApplyArgs& args, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("RoadApply", args.dtype); !s.ok()) return s;
  if (!args.segments || args.segments->count == 0) return absl::OkStatus();
  const AdapterSegments& segs = *args.segments;
  for (int32_t si = 0; si < segs.count; ++si) {
    if (segs.slot[si] < 0 || segs.slot[si] >= args.num_slots) {
      return absl::InvalidArgumentError(absl::StrFormat("RoadApply: segment %d names slot %d of %d", si,
                                                        segs.slot[si], args.num_slots));
    }
    const RoadSlotWeights& w = args.slots[segs.slot[si]];
    if (w.c == nullptr) continue;
    if (!w.s || w.group < 2 || w.group % 2 != 0 || args.out % w.group != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("RoadApply: slot %d has group %d for out=%d", segs.slot[si], w.group, args.out));
    }
  }
  float* ys = static_cast<float*>(args.y);
  ForEachSegmentRow(segs, args.out, ctx, [&](int32_t si, int64_t row) {
    const RoadSlotWeights& w = args.slots[segs.slot[si]];
    if (w.c == nullptr) return;
    const int64_t h = w.group / 2;
    float* y = ys + row * args.out;
    for (int64_t g = 0; g < args.out; g += w.group) {
      for (int64_t j = 0; j < h; ++j) {
        const int64_t a = g + j, b = a + h;
        const float ya = y[a], yb = y[b];
        y[a] = w.c[a] * ya + w.s[a] * yb;
        y[b] = w.c[b] * yb + w.s[b] * ya;
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
