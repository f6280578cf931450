#include "kernels/lora_apply.h"

#include "absl/strings/str_format.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vector_isa.h"

namespace tessera {

absl::Status LoraApplyCpu(const LoraApplyArgs& args, ThreadPool& pool) {
  const VectorIsa& isa = ActiveIsa();
  for (int32_t s = 0; s < args.num_segments; ++s) {
    const LoraSegment& seg = args.segments[s];
    if (seg.rank < 1 || seg.rank > kMaxLoraRank || !seg.a || !seg.b) {
      return absl::InvalidArgumentError(absl::StrFormat("LoraApply: bad segment %d (rank %d)", s, seg.rank));
    }
    const int64_t work_per_row = int64_t{seg.rank} * (args.in + args.out);
    pool.ParallelFor(seg.row_count, std::max<int64_t>(1, (int64_t{1} << 16) / work_per_row),
                     [&](int64_t begin, int64_t end) {
                       float t[kMaxLoraRank];
                       for (int64_t i = begin; i < end; ++i) {
                         const int64_t row = seg.row_begin + i;
                         const float* x = args.x + row * args.in;
                         float* y = args.y + row * args.out;
                         for (int32_t k = 0; k < seg.rank; ++k) t[k] = isa.dot(seg.a + k * args.in, x, args.in);
                         for (int64_t o = 0; o < args.out; ++o) {
                           y[o] += seg.scale * isa.dot(seg.b + o * seg.rank, t, seg.rank);
                         }
                       }
                     });
  }
  return absl::OkStatus();
}

}  // namespace tessera
