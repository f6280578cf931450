#include "kernels/lora_apply.h"

#include "absl/strings/str_format.h"
#include "kernels/cpu/segment_rows.h"
#include "kernels/cpu/vector_isa.h"

namespace tessera {

absl::Status LoraApplyCpu(const LoraApplyArgs& args, ThreadPool& pool) {
  int32_t max_rank = 1;
  for (int32_t s = 0; s < args.num_segments; ++s) {
    const LoraSegment& seg = args.segments[s];
    if (seg.rank < 1 || seg.rank > kMaxLoraRank || !seg.a || !seg.b || seg.row_count < 0) {
      return absl::InvalidArgumentError(absl::StrFormat("LoraApply: bad segment %d (rank %d)", s, seg.rank));
    }
    max_rank = std::max(max_rank, seg.rank);
  }
  const VectorIsa& isa = ActiveIsa();
  ForEachSegmentRow(args.segments, args.num_segments, int64_t{max_rank} * (args.in + args.out), pool,
                    [&](int32_t s, int64_t row) {
                      const LoraSegment& seg = args.segments[s];
                      const float* x = args.x + row * args.in;
                      float* y = args.y + row * args.out;
                      float t[kMaxLoraRank];
                      // Shrink: t = A x. Expand: y += scale · B t (rank is short:
                      // an inline loop beats a call per output).
                      for (int32_t k = 0; k < seg.rank; ++k) t[k] = isa.dot(seg.a + k * args.in, x, args.in);
                      for (int64_t o = 0; o < args.out; ++o) {
                        const float* b = seg.b + o * seg.rank;
                        float acc = 0;
                        for (int32_t k = 0; k < seg.rank; ++k) acc += b[k] * t[k];
                        y[o] += seg.scale * acc;
                      }
                    });
  return absl::OkStatus();
}

}  // namespace tessera
