// DiaBlo block-diagonal update over adapter segments: for every row r of a
// segment, y[r][i·d2 + o] += Σ_j x[r][i·d1 + j] · block[i][j][o] for
// i < blocks, j < d1, o < d2, skipping input columns ≥ in (zero padding) and
// output columns ≥ out (truncation).
//   x [rows, in], y [rows, out], block [blocks, d1, d2] per segment.
#ifndef TESSERA_KERNELS_DIABLO_APPLY_H_
#define TESSERA_KERNELS_DIABLO_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

struct DiabloSegment {
  int32_t row_begin = 0;
  int32_t row_count = 0;
  const float* block = nullptr;
  int32_t blocks = 0;
  int32_t d1 = 0;
  int32_t d2 = 0;
};

struct DiabloApplyArgs {
  const float* x = nullptr;
  float* y = nullptr;
  int64_t in = 0;
  int64_t out = 0;
  const DiabloSegment* segments = nullptr;
  int32_t num_segments = 0;
};

absl::Status DiabloApplyCpu(const DiabloApplyArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_DIABLO_APPLY_H_
