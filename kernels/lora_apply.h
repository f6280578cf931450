// LoRA shrink/expand over the plan's low-rank adapter segments (SGMV): for
// every row r of a segment with slot k, y[r] += scale_k · B_k (A_k x[r]).
//   x [rows, in], y [rows, out] (already holding the base output);
//   rows in no segment are untouched. rank is at most kMaxLoraRank.
#ifndef TESSERA_KERNELS_LORA_APPLY_H_
#define TESSERA_KERNELS_LORA_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"
#include "kernels/plan_view.h"
#include "kernels/supported_shapes.h"

namespace tessera {

// One adapter slot's weights for this layer and module; a == nullptr when the
// adapter does not target it (its rows are left alone).
struct LoraSlotWeights {
  const float* a = nullptr;  // [rank, in]
  const float* b = nullptr;  // [out, rank]
  int32_t rank = 0;
  float scale = 1.0f;
};

struct LoraApplyArgs {
  const void* x = nullptr;
  void* y = nullptr;
  DType dtype = DType::kF32;  // of x and y
  int64_t in = 0;
  int64_t out = 0;
  const AdapterSegments* segments = nullptr;  // the plan's low-rank segments
  const LoraSlotWeights* slots = nullptr;     // [num_slots], by segment slot
  int32_t num_slots = 0;
};

absl::Status LoraApplyCpu(const LoraApplyArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_LORA_APPLY_H_
