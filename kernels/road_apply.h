// RoAd rotation over the plan's rotation segments, in place on the layer
// output (after the bias): inside each group of `group` outputs, element
// a = j and its partner b = j + group/2 become
//   y[a] = c[a]·y[a] + s[a]·y[b],   y[b] = c[b]·y[b] + s[b]·y[a]
// with the old values on the right (s is signed: −α·sin for the first half).
//   y [rows, out]; c, s [out] per slot; out % group == 0.
#ifndef TESSERA_KERNELS_ROAD_APPLY_H_
#define TESSERA_KERNELS_ROAD_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"
#include "kernels/plan_view.h"

namespace tessera {

// One slot's rotation for this layer and module; c == nullptr when the
// adapter does not target it.
struct RoadSlotWeights {
  const float* c = nullptr;  // [out]
  const float* s = nullptr;  // [out], signed
  int32_t group = 0;
};

struct RoadApplyArgs {
  void* y = nullptr;
  DType dtype = DType::kF32;
  int64_t out = 0;
  const AdapterSegments* segments = nullptr;  // the plan's rotation segments
  const RoadSlotWeights* slots = nullptr;     // [num_slots]
  int32_t num_slots = 0;
};

absl::Status RoadApplyCpu(const RoadApplyArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_ROAD_APPLY_H_
