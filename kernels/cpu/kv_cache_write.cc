#include "kernels/kv_cache_write.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace tessera {

absl::Status KvCacheWriteCpu(const KvCacheWriteArgs& a) {
  if (!a.plan || a.block_size <= 0) {
    return absl::InvalidArgumentError("KvCacheWrite: bad arguments");
  }
  const int64_t row_floats = static_cast<int64_t>(a.num_kv_heads) * a.head_dim;
  for (const SequencePlan& s : a.plan->sequences) {
    for (int32_t i = 0; i < s.query_len; ++i) {
      const int32_t slot = s.kv_len + i;
      const size_t logical = static_cast<size_t>(slot / a.block_size);
      if (logical >= s.block_table.size()) {
        return absl::InternalError(
            absl::StrFormat("KvCacheWrite: slot %d needs block %d but the table has %d", slot, logical,
                            s.block_table.size()));
      }
      const int32_t block = s.block_table[logical];
      if (block < 0 || block >= a.num_blocks) {
        return absl::InternalError(absl::StrFormat("KvCacheWrite: block %d out of range", block));
      }
      const int64_t dst = (static_cast<int64_t>(block) * a.block_size + slot % a.block_size) * row_floats;
      const int64_t src = static_cast<int64_t>(s.query_begin + i) * row_floats;
      std::memcpy(a.k_cache + dst, a.k + src, row_floats * sizeof(float));
      std::memcpy(a.v_cache + dst, a.v + src, row_floats * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
