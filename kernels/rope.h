// Rotary position embedding, rotate-half (HF) convention, applied in place to
// the query and key rows of one step.
//   q [rows, num_q_heads, head_dim], k [rows, num_kv_heads, head_dim],
//   positions [rows] (integers), inv_freq [rotary_dims / 2].
// Channel i < rotary_dims/2 pairs with i + rotary_dims/2 and turns by
// positions[r] * inv_freq[i]; the angle is formed and reduced in fp64, so
// large positions lose no precision. Channels >= rotary_dims are left as they
// are (RoPE-ID); rotary_dims == head_dim is plain RoPE.
#ifndef TESSERA_KERNELS_ROPE_H_
#define TESSERA_KERNELS_ROPE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"
#include "kernels/supported_shapes.h"

namespace tessera {

struct RopeArgs {
  void* q = nullptr;
  void* k = nullptr;
  DType dtype = DType::kF32;  // of q and k
  const int32_t* positions = nullptr;
  const float* inv_freq = nullptr;
  int64_t rows = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t rotary_dims = 0;  // even, <= head_dim; 0 means head_dim
  float attention_scaling = 1.0f;  // multiplies cos and sin (llama3 uses 1)
};

absl::Status RopeCpu(const RopeArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_ROPE_H_
