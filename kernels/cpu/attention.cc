#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vector_isa.h"
#include "kernels/supported_shapes.h"

namespace tessera {
namespace {

// Keys per softmax block.
constexpr int32_t kKeyBlock = 32;

}  // namespace

absl::Status AttentionCpu(const AttentionArgs& a, const ExecContext& ctx) {
  if (absl::Status s = RequireF32("Attention", a.dtype); !s.ok()) return s;
  if (!a.plan || !a.q || !a.k_cache || !a.v_cache || !a.out || a.plan->block_size <= 0 || a.num_kv_heads <= 0 ||
      a.num_q_heads % a.num_kv_heads != 0 || a.head_dim <= 0 || a.head_dim > kMaxHeadDim ||
      a.num_q_heads / a.num_kv_heads > kMaxGqaGroup) {
    return absl::InvalidArgumentError(absl::StrFormat("Attention: bad arguments q_heads=%d kv_heads=%d head_dim=%d",
                                                      a.num_q_heads, a.num_kv_heads, a.head_dim));
  }
  const PlanView& plan = *a.plan;
  const int32_t rows = plan.num_tokens;
  const int32_t bs = plan.block_size;
  const float* q_all = static_cast<const float*>(a.q);
  const float* k_cache = static_cast<const float*>(a.k_cache);
  const float* v_cache = static_cast<const float*>(a.v_cache);
  float* out_all = static_cast<float*>(a.out);
  const VectorIsa& isa = ActiveIsa();
  const int32_t group = a.num_q_heads / a.num_kv_heads;
  const int32_t hd = a.head_dim;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * hd;
  // One work item per (row, kv head): each key and value is read once for
  // all `group` query heads that share it, a block of keys at a time, with a
  // running maximum per head (online softmax).
  const int64_t work = static_cast<int64_t>(rows) * a.num_kv_heads;
  ParallelFor(ctx, work, 1, [&](int64_t begin, int64_t end) {
    float acc[kMaxGqaGroup][kMaxHeadDim];
    float scores[kMaxGqaGroup][kKeyBlock];
    float running_max[kMaxGqaGroup], denom[kMaxGqaGroup];
    for (int64_t w = begin; w < end; ++w) {
      const int32_t row = static_cast<int32_t>(w / a.num_kv_heads);
      const int32_t kv_head = static_cast<int32_t>(w % a.num_kv_heads);
      const int32_t head0 = kv_head * group;
      const float* q = q_all + (static_cast<int64_t>(row) * a.num_q_heads + head0) * hd;
      float* out = out_all + (static_cast<int64_t>(row) * a.num_q_heads + head0) * hd;
      const int32_t seq = plan.row_to_seq[row];
      const int32_t* pages = plan.kv_indices + plan.kv_indptr[seq];
      const int32_t context = plan.kv_len(seq) + (row - plan.qo_indptr[seq]) + 1;
      for (int32_t g = 0; g < group; ++g) {
        running_max[g] = -std::numeric_limits<float>::infinity();
        denom[g] = 0;
        std::fill(acc[g], acc[g] + hd, 0.0f);
      }
      for (int32_t t0 = 0; t0 < context; t0 += kKeyBlock) {
        const int32_t n = std::min(kKeyBlock, context - t0);
        const float* keys[kKeyBlock];
        const float* values[kKeyBlock];
        for (int32_t j = 0; j < n; ++j) {
          const int32_t t = t0 + j;
          const int64_t off = (static_cast<int64_t>(pages[t / bs]) * bs + t % bs) * kv_row +
                              static_cast<int64_t>(kv_head) * hd;
          keys[j] = k_cache + off;
          values[j] = v_cache + off;
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
