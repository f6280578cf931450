#include "kernels/diablo_apply.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/segment_rows.h"

namespace tessera {

absl::Status DiabloApplyCpu(const DiabloApplyArgs& args, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("DiabloApply", args.dtype); !s.ok()) return s;
  if (!args.segments || args.segments->count == 0) return absl::OkStatus();
  const AdapterSegments& segs = *args.segments;
  int64_t max_work = 1;
  for (int32_t s = 0; s < segs.count; ++s) {
    if (segs.slot[s] < 0 || segs.slot[s] >= args.num_slots) {
      return absl::InvalidArgumentError(absl::StrFormat("DiabloApply: segment %d names slot %d of %d", s,
                                                        segs.slot[s], args.num_slots));
    }
    const DiabloSlotWeights& w = args.slots[segs.slot[s]];
    if (w.block == nullptr) continue;
    if (w.blocks < 1 || w.d1 < 1 || w.d2 < 1 || int64_t{w.blocks} * w.d1 < args.in ||
        int64_t{w.blocks} * w.d2 < args.out) {
      return absl::InvalidArgumentError(
          absl::StrFormat("DiabloApply: slot %d with %d blocks of %dx%d does not cover in=%d out=%d",
                          segs.slot[s], w.blocks, w.d1, w.d2, args.in, args.out));
    }
    max_work = std::max<int64_t>(max_work, int64_t{w.blocks} * w.d1 * w.d2);
  }
  const float* xs = static_cast<const float*>(args.x);
  float* ys = static_cast<float*>(args.y);
  ForEachSegmentRow(segs, max_work, ctx, [&](int32_t s, int64_t row) {
    const DiabloSlotWeights& w = args.slots[segs.slot[s]];
    if (w.block == nullptr) return;
    const float* x = xs + row * args.in;
    float* y = ys + row * args.out;
    for (int32_t b = 0; b < w.blocks; ++b) {
      const int64_t in0 = int64_t{b} * w.d1, out0 = int64_t{b} * w.d2;
      const int64_t jn = std::clamp<int64_t>(args.in - in0, 0, w.d1);
      const int64_t on = std::clamp<int64_t>(args.out - out0, 0, w.d2);
      const float* blk = w.block + int64_t{b} * w.d1 * w.d2;
      for (int64_t j = 0; j < jn; ++j) {
        const float xj = x[in0 + j];
        const float* wr = blk + j * w.d2;
        for (int64_t o = 0; o < on; ++o) y[out0 + o] += xj * wr[o];
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
