// Writes the keys and values of one step's rows into the paged KV cache of
// one layer, at the entries the plan assigns (see plan_view.h).
//   k, v [num_tokens, num_kv_heads, head_dim]
//   k_cache, v_cache [num_blocks, plan->block_size, num_kv_heads, head_dim]
#ifndef TESSERA_KERNELS_KV_CACHE_WRITE_H_
#define TESSERA_KERNELS_KV_CACHE_WRITE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"
#include "kernels/plan_view.h"

namespace tessera {

struct KvCacheWriteArgs {
  const void* k = nullptr;
  const void* v = nullptr;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  DType dtype = DType::kF32;  // of k, v and the cache
  const PlanView* plan = nullptr;
  int32_t num_blocks = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

absl::Status KvCacheWriteCpu(const KvCacheWriteArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_KV_CACHE_WRITE_H_
