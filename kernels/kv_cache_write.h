// Writes the keys and values of one step's rows into the paged KV cache of
// one layer, at the slots the BatchPlan assigns (see batch_plan.h).
//   k, v [num_tokens, num_kv_heads, head_dim]
//   k_cache, v_cache [num_blocks, block_size, num_kv_heads, head_dim]
#ifndef TESSERA_KERNELS_KV_CACHE_WRITE_H_
#define TESSERA_KERNELS_KV_CACHE_WRITE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/batch_plan.h"

namespace tessera {

struct KvCacheWriteArgs {
  const float* k = nullptr;
  const float* v = nullptr;
  float* k_cache = nullptr;
  float* v_cache = nullptr;
  const BatchPlan* plan = nullptr;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

absl::Status KvCacheWriteCpu(const KvCacheWriteArgs& args);

}  // namespace tessera

#endif  // TESSERA_KERNELS_KV_CACHE_WRITE_H_
