#include "kernels/kv_cache_write.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"

namespace tessera {

absl::Status KvCacheWriteCpu(const KvCacheWriteArgs& a, const ExecContext&) {
  if (absl::Status s = RequireF32("KvCacheWrite", a.dtype); !s.ok()) return s;
  if (!a.plan || a.plan->block_size <= 0 || !a.k || !a.v || !a.k_cache || !a.v_cache) {
    return absl::InvalidArgumentError("KvCacheWrite: bad arguments");
  }
  const PlanView& p = *a.plan;
  const int32_t bs = p.block_size;
  const int64_t row_floats = static_cast<int64_t>(a.num_kv_heads) * a.head_dim;
  const float* k = static_cast<const float*>(a.k);
  const float* v = static_cast<const float*>(a.v);
  float* k_cache = static_cast<float*>(a.k_cache);
  float* v_cache = static_cast<float*>(a.v_cache);
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    const int32_t kv_len = p.kv_len(s);
    const int32_t* pages = p.kv_indices + p.kv_indptr[s];
    for (int32_t row = p.qo_indptr[s]; row < p.qo_indptr[s + 1]; ++row) {
      const int32_t entry = kv_len + (row - p.qo_indptr[s]);
      const int32_t block = pages[entry / bs];
      if (block < 0 || block >= a.num_blocks) {
        return absl::InternalError(absl::StrFormat("KvCacheWrite: block %d out of range", block));
      }
      const int64_t dst = (static_cast<int64_t>(block) * bs + entry % bs) * row_floats;
      const int64_t src = static_cast<int64_t>(row) * row_floats;
      std::memcpy(k_cache + dst, k + src, row_floats * sizeof(float));
      std::memcpy(v_cache + dst, v + src, row_floats * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
