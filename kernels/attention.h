// Causal grouped-query attention over the paged KV cache of one layer.
//   q [num_tokens, num_q_heads, head_dim], out [num_tokens, num_q_heads, head_dim]
//   k_cache, v_cache [num_blocks, block_size, num_kv_heads, head_dim]
// Row i of sequence s attends to cache slots [0, s.kv_len + (i - s.query_begin)];
// the step's own keys must already be written (KvCacheWrite). Query head h reads
// kv head h / (num_q_heads / num_kv_heads), as HF's repeat_kv does. Softmax is
// computed in fp32 with a running maximum, so no score buffer is needed.
#ifndef TESSERA_KERNELS_ATTENTION_H_
#define TESSERA_KERNELS_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/batch_plan.h"

namespace tessera {

class ThreadPool;

struct AttentionArgs {
  const float* q = nullptr;
  const float* k_cache = nullptr;
  const float* v_cache = nullptr;
  float* out = nullptr;
  const BatchPlan* plan = nullptr;
  int32_t block_size = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;  // usually 1/sqrt(head_dim)
};

absl::Status AttentionCpu(const AttentionArgs& args, ThreadPool& pool);

}  // namespace tessera

#endif  // TESSERA_KERNELS_ATTENTION_H_
