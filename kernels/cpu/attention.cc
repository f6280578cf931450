#include "kernels/attention.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/rope.h"

namespace tessera {

absl::Status AttentionCpu(const AttentionArgs& a, ThreadPool& pool) {
  if (!a.plan || !a.q || !a.k_cache || !a.v_cache || !a.out || a.block_size <= 0 || a.num_kv_heads <= 0 ||
      a.num_q_heads % a.num_kv_heads != 0 || a.head_dim <= 0 || a.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Attention: bad arguments q_heads=%d kv_heads=%d head_dim=%d", a.num_q_heads,
                        a.num_kv_heads, a.head_dim));
  }
  const BatchPlan& plan = *a.plan;
  // Map each row to its sequence once; then parallelize over (row, head).
  const int32_t rows = plan.num_tokens();
  std::vector<int32_t> row_seq(rows, -1);
  for (size_t s = 0; s < plan.sequences.size(); ++s) {
    const SequencePlan& sp = plan.sequences[s];
    for (int32_t i = 0; i < sp.query_len; ++i) row_seq[sp.query_begin + i] = static_cast<int32_t>(s);
  }
  const int32_t group = a.num_q_heads / a.num_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * a.head_dim;
  const int64_t work = static_cast<int64_t>(rows) * a.num_q_heads;
  pool.ParallelFor(work, 4, [&](int64_t begin, int64_t end) {
    float acc[kMaxHeadDim];
    for (int64_t w = begin; w < end; ++w) {
      const int32_t row = static_cast<int32_t>(w / a.num_q_heads);
      const int32_t head = static_cast<int32_t>(w % a.num_q_heads);
      const int32_t kv_head = head / group;
      const float* q = a.q + (static_cast<int64_t>(row) * a.num_q_heads + head) * a.head_dim;
      float* out = a.out + (static_cast<int64_t>(row) * a.num_q_heads + head) * a.head_dim;
      if (row_seq[row] < 0) {
        for (int32_t d = 0; d < a.head_dim; ++d) out[d] = 0;
        continue;
      }
      const SequencePlan& sp = plan.sequences[row_seq[row]];
      const int32_t ctx = sp.kv_len + (row - sp.query_begin) + 1;
      float running_max = -std::numeric_limits<float>::infinity();
      float denom = 0;
      for (int32_t d = 0; d < a.head_dim; ++d) acc[d] = 0;
      for (int32_t t = 0; t < ctx; ++t) {
        const int32_t block = sp.block_table[t / a.block_size];
        const int64_t off = (static_cast<int64_t>(block) * a.block_size + t % a.block_size) * kv_row +
                            static_cast<int64_t>(kv_head) * a.head_dim;
        const float* k = a.k_cache + off;
        const float* v = a.v_cache + off;
        float score = 0;
        for (int32_t d = 0; d < a.head_dim; ++d) score += q[d] * k[d];
        score *= a.scale;
        if (score > running_max) {
          const float correction = std::exp(running_max - score);
          denom *= correction;
          for (int32_t d = 0; d < a.head_dim; ++d) acc[d] *= correction;
          running_max = score;
        }
        const float p = std::exp(score - running_max);
        denom += p;
        for (int32_t d = 0; d < a.head_dim; ++d) acc[d] += p * v[d];
      }
      const float inv = 1.0f / denom;
      for (int32_t d = 0; d < a.head_dim; ++d) out[d] = acc[d] * inv;
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
