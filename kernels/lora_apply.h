// LoRA shrink/expand over adapter segments (SGMV): for every row r of a
// segment, y[r] += scale · B (A x[r]).
//   x [rows, in], y [rows, out] (already holding the base output);
//   segment s covers rows [row_begin, row_begin + row_count) with its own
//   A [rank, in], B [out, rank]; rows in no segment are untouched.
// rank is at most kMaxLoraRank.
#ifndef TESSERA_KERNELS_LORA_APPLY_H_
#define TESSERA_KERNELS_LORA_APPLY_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

inline constexpr int32_t kMaxLoraRank = 1024;

struct LoraSegment {
  int32_t row_begin = 0;
  int32_t row_count = 0;
  const float* a = nullptr;
  const float* b = nullptr;
  int32_t rank = 0;
  float scale = 1.0f;
};

struct LoraApplyArgs {
  const float* x = nullptr;
  float* y = nullptr;
  int64_t in = 0;
  int64_t out = 0;
  const LoraSegment* segments = nullptr;
  int32_t num_segments = 0;
};

absl::Status LoraApplyCpu(const LoraApplyArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_LORA_APPLY_H_
