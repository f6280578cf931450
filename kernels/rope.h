// Rotary position embedding, rotate-half (HF) convention, applied in place to
// the query and key rows of one step.
//   q [rows, num_q_heads, head_dim], k [rows, num_kv_heads, head_dim],
//   positions [rows] (integers), inv_freq [head_dim / 2].
// Channel i < head_dim/2 pairs with i + head_dim/2 and turns by
// positions[r] * inv_freq[i]; the angle is formed and reduced in fp64, so
// large positions lose no precision. An inv_freq of 0 leaves its pair as is.
#ifndef TESSERA_KERNELS_ROPE_H_
#define TESSERA_KERNELS_ROPE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

class ThreadPool;

inline constexpr int kMaxHeadDim = 256;

struct RopeArgs {
  float* q = nullptr;
  float* k = nullptr;
  const int32_t* positions = nullptr;
  const float* inv_freq = nullptr;
  int64_t rows = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float attention_scaling = 1.0f;  // multiplies cos and sin (llama3 uses 1)
};

absl::Status RopeCpu(const RopeArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_ROPE_H_
