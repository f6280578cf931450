// Runs fn(segment_index, row) for every row of the plan's adapter segments of
// one kind, split across the context's pool as one flat range, so many
// one-row segments (many distinct adapters) parallelize as well as one long
// segment.
#ifndef TESSERA_KERNELS_CPU_SEGMENT_ROWS_H_
#define TESSERA_KERNELS_CPU_SEGMENT_ROWS_H_

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/thread_pool.h"
#include "kernels/exec.h"
#include "kernels/plan_view.h"

namespace tessera {

template <typename Fn>
void ForEachSegmentRow(const AdapterSegments& segs, int64_t work_per_row, const ExecContext& ctx, const Fn& fn) {
  int64_t total = 0;
  for (int32_t s = 0; s < segs.count; ++s) total += segs.len[s];
  ParallelFor(ctx, total, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, work_per_row)),
              [&](int64_t begin, int64_t end) {
                int32_t s = 0;
                int64_t first = 0;  // flat index of segment s's first row
                while (first + segs.len[s] <= begin) first += segs.len[s++];
                for (int64_t i = begin; i < end; ++i) {
                  while (i >= first + segs.len[s]) first += segs.len[s++];
                  fn(s, segs.start[s] + (i - first));
                }
              });
}

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_SEGMENT_ROWS_H_
