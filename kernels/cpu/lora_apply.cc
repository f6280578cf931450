#include "kernels/lora_apply.h"

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/segment_rows.h"
#include "kernels/cpu/vector_isa.h"

namespace tessera {

absl::Status LoraApplyCpu(const LoraApplyArgs& args, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("LoraApply", args.dtype); !s.ok()) return s;
  if (!args.segments || args.segments->count == 0) return absl::OkStatus();
  const AdapterSegments& segs = *args.segments;
  int32_t max_rank = 1;
  for (int32_t s = 0; s < segs.count; ++s) {
    if (segs.slot[s] < 0 || segs.slot[s] >= args.num_slots) {
      return absl::InvalidArgumentError(absl::StrFormat("LoraApply: segment %d names slot %d of %d", s,
                                                        segs.slot[s], args.num_slots));
    }
    const LoraSlotWeights& w = args.slots[segs.slot[s]];
    if (w.a == nullptr) continue;
    if (w.rank < 1 || w.rank > kMaxLoraRank || !w.b) {
      return absl::InvalidArgumentError(absl::StrFormat("LoraApply: bad slot %d (rank %d)", segs.slot[s], w.rank));
    }
    max_rank = std::max(max_rank, w.rank);
  }
  const VectorIsa& isa = ActiveIsa();
  const float* xs = static_cast<const float*>(args.x);
  float* ys = static_cast<float*>(args.y);
  ForEachSegmentRow(segs, int64_t{max_rank} * (args.in + args.out), ctx, [&](int32_t s, int64_t row) {
    const LoraSlotWeights& w = args.slots[segs.slot[s]];
    if (w.a == nullptr) return;
    const float* x = xs + row * args.in;
    float* y = ys + row * args.out;
    float t[kMaxLoraRank];
    // Shrink: t = A x. Expand: y += scale · B t (rank is short: an inline
    // loop beats a call per output).
    for (int32_t k = 0; k < w.rank; ++k) t[k] = isa.dot(w.a + k * args.in, x, args.in);
    for (int64_t o = 0; o < args.out; ++o) {
      const float* b = w.b + o * w.rank;
      float acc = 0;
      for (int32_t k = 0; k < w.rank; ++k) acc += b[k] * t[k];
      y[o] += w.scale * acc;
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
