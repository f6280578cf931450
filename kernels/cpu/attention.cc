#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vector_isa.h"
#include "kernels/rope.h"

namespace tessera {
namespace {

// Query heads per KV head handled together, and keys per softmax block.
constexpr int32_t kMaxGroup = 64;
constexpr int32_t kKeyBlock = 32;

}  // namespace

absl::Status AttentionCpu(const AttentionArgs& a, ThreadPool& pool) {
  if (!a.plan || !a.q || !a.k_cache || !a.v_cache || !a.out || a.block_size <= 0 || a.num_kv_heads <= 0 ||
      a.num_q_heads % a.num_kv_heads != 0 || a.head_dim <= 0 || a.head_dim > kMaxHeadDim ||
      a.num_q_heads / a.num_kv_heads > kMaxGroup) {
    return absl::InvalidArgumentError(absl::StrFormat("Attention: bad arguments q_heads=%d kv_heads=%d head_dim=%d",
                                                      a.num_q_heads, a.num_kv_heads, a.head_dim));
  }
  const BatchPlan& plan = *a.plan;
  const int32_t rows = plan.num_tokens();
  std::vector<int32_t> row_seq(rows, -1);
  for (size_t s = 0; s < plan.sequences.size(); ++s) {
    const SequencePlan& sp = plan.sequences[s];
    for (int32_t i = 0; i < sp.query_len; ++i) row_seq[sp.query_begin + i] = static_cast<int32_t>(s);
  }
  const VectorIsa& isa = ActiveIsa();
  const int32_t group = a.num_q_heads / a.num_kv_heads;
  const int32_t hd = a.head_dim;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * hd;
  // One work item per (row, kv head): each key and value is read once for
  // all `group` query heads that share it, a block of keys at a time, with a
  // running maximum per head (online softmax).
  const int64_t work = static_cast<int64_t>(rows) * a.num_kv_heads;
  pool.ParallelFor(work, 1, [&](int64_t begin, int64_t end) {
    float acc[kMaxGroup][kMaxHeadDim];
    float scores[kMaxGroup][kKeyBlock];
    float running_max[kMaxGroup], denom[kMaxGroup];
    for (int64_t w = begin; w < end; ++w) {
      const int32_t row = static_cast<int32_t>(w / a.num_kv_heads);
      const int32_t kv_head = static_cast<int32_t>(w % a.num_kv_heads);
      const int32_t head0 = kv_head * group;
      const float* q = a.q + (static_cast<int64_t>(row) * a.num_q_heads + head0) * hd;
      float* out = a.out + (static_cast<int64_t>(row) * a.num_q_heads + head0) * hd;
      if (row_seq[row] < 0) {
        std::fill(out, out + static_cast<int64_t>(group) * hd, 0.0f);
        continue;
      }
      const SequencePlan& sp = plan.sequences[row_seq[row]];
      const int32_t ctx = sp.kv_len + (row - sp.query_begin) + 1;
      for (int32_t g = 0; g < group; ++g) {
        running_max[g] = -std::numeric_limits<float>::infinity();
        denom[g] = 0;
        std::fill(acc[g], acc[g] + hd, 0.0f);
      }
      for (int32_t t0 = 0; t0 < ctx; t0 += kKeyBlock) {
        const int32_t n = std::min(kKeyBlock, ctx - t0);
        const float* keys[kKeyBlock];
        const float* values[kKeyBlock];
        for (int32_t j = 0; j < n; ++j) {
          const int32_t t = t0 + j;
          const int64_t off = (static_cast<int64_t>(sp.block_table[t / a.block_size]) * a.block_size +
                               t % a.block_size) * kv_row + static_cast<int64_t>(kv_head) * hd;
          keys[j] = a.k_cache + off;
          values[j] = a.v_cache + off;
        }
        for (int32_t g = 0; g < group; ++g) {
          float block_max = running_max[g];
          for (int32_t j = 0; j < n; ++j) {
            scores[g][j] = isa.dot(q + static_cast<int64_t>(g) * hd, keys[j], hd) * a.scale;
            block_max = std::max(block_max, scores[g][j]);
          }
          const float correction = std::exp(running_max[g] - block_max);  // 0 on the first block
          denom[g] *= correction;
          for (int32_t d = 0; d < hd; ++d) acc[g][d] *= correction;
          running_max[g] = block_max;
          for (int32_t j = 0; j < n; ++j) {
            const float p = std::exp(scores[g][j] - block_max);
            denom[g] += p;
            isa.axpy(p, values[j], acc[g], hd);
          }
        }
      }
      for (int32_t g = 0; g < group; ++g) {
        const float inv = 1.0f / denom[g];
        for (int32_t d = 0; d < hd; ++d) out[static_cast<int64_t>(g) * hd + d] = acc[g][d] * inv;
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
