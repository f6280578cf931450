// Causal grouped-query attention over the paged KV cache of one layer.
//   q [num_tokens, num_q_heads, head_dim], out [num_tokens, num_q_heads, head_dim]
//   k_cache, v_cache [num_blocks, plan->block_size, num_kv_heads, head_dim]
// Row r of sequence s attends to cache entries [0, kv_len(s) + (r - qo_indptr[s])]
// (see plan_view.h); the step's own keys must already be written (KvCacheWrite).
// Query head h reads kv head h / (num_q_heads / num_kv_heads), as HF's
// repeat_kv does. Softmax is computed in fp32 with a running maximum, so no
// score buffer is needed.
#ifndef TESSERA_KERNELS_ATTENTION_H_
#define TESSERA_KERNELS_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"
#include "kernels/plan_view.h"

namespace tessera {

struct AttentionArgs {
  const void* q = nullptr;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  void* out = nullptr;
  DType dtype = DType::kF32;  // of q, out and the cache
  const PlanView* plan = nullptr;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;  // usually 1/sqrt(head_dim)
};

absl::Status AttentionCpu(const AttentionArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_ATTENTION_H_
