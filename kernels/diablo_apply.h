// DiaBlo block-diagonal update over the plan's block-diagonal segments: for
// every row r of a segment, y[r][i·d2 + o] += Σ_j x[r][i·d1 + j] ·
// block[i][j][o] for i < blocks, j < d1, o < d2, skipping input columns ≥ in
// (zero padding) and output columns ≥ out (truncation).
//   x [rows, in], y [rows, out], block [blocks, d1, d2] per slot.
#ifndef TESSERA_KERNELS_DIABLO_APPLY_H_
#define TESSERA_KERNELS_DIABLO_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"
#include "kernels/plan_view.h"

namespace tessera {

// One slot's blocks for this layer and module; block == nullptr when the
// adapter does not target it.
struct DiabloSlotWeights {
  const float* block = nullptr;  // [blocks, d1, d2]
  int32_t blocks = 0;
  int32_t d1 = 0;
  int32_t d2 = 0;
};

struct DiabloApplyArgs {
  const void* x = nullptr;
  void* y = nullptr;
  DType dtype = DType::kF32;  // of x and y
  int64_t in = 0;
  int64_t out = 0;
  const AdapterSegments* segments = nullptr;  // the plan's block-diagonal segments
  const DiabloSlotWeights* slots = nullptr;   // [num_slots]
  int32_t num_slots = 0;
};

absl::Status DiabloApplyCpu(const DiabloApplyArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_DIABLO_APPLY_H_
