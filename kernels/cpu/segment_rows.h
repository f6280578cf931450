// Runs fn(segment_index, row) for every row of every adapter segment, split
// across the pool as one flat range, so many one-row segments (many distinct
// adapters) parallelize as well as one long segment.
#ifndef TESSERA_KERNELS_CPU_SEGMENT_ROWS_H_
#define TESSERA_KERNELS_CPU_SEGMENT_ROWS_H_

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace tessera {

template <typename Segment, typename Fn>
void ForEachSegmentRow(const Segment* segments, int32_t num_segments, int64_t work_per_row, ThreadPool& pool,
                       const Fn& fn) {
  int64_t total = 0;
  for (int32_t s = 0; s < num_segments; ++s) total += segments[s].row_count;
  pool.ParallelFor(total, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, work_per_row)),
                   [&](int64_t begin, int64_t end) {
                     int32_t s = 0;
                     int64_t first = 0;  // flat index of segment s's first row
                     while (first + segments[s].row_count <= begin) first += segments[s++].row_count;
                     for (int64_t i = begin; i < end; ++i) {
                       while (i >= first + segments[s].row_count) first += segments[s++].row_count;
                       fn(s, segments[s].row_begin + (i - first));
                     }
                   });
}

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_SEGMENT_ROWS_H_
