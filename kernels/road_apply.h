// RoAd rotation over adapter segments, in place on the layer output (after
// the bias): inside each group of `group` outputs, element a = j and its
// partner b = j + group/2 become
//   y[a] = c[a]·y[a] + s[a]·y[b],   y[b] = c[b]·y[b] + s[b]·y[a]
// with the old values on the right (s is signed: −α·sin for the first half).
//   y [rows, out]; c, s [out] per segment; out % group == 0.
#ifndef TESSERA_KERNELS_ROAD_APPLY_H_
#define TESSERA_KERNELS_ROAD_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

struct RoadSegment {
  int32_t row_begin = 0;
  int32_t row_count = 0;
  const float* c = nullptr;
  const float* s = nullptr;
  int32_t group = 0;
};

struct RoadApplyArgs {
  float* y = nullptr;
  int64_t out = 0;
  const RoadSegment* segments = nullptr;
  int32_t num_segments = 0;
};

absl::Status RoadApplyCpu(const RoadApplyArgs& args);

}  // namespace tessera

#endif  // TESSERA_KERNELS_ROAD_APPLY_H_
