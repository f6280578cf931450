// The shapes every backend's kernels support: one list, checked when a model
// or an adapter is loaded (with a message naming the limit), so that no
// kernel refuses a shape at the first request.
#ifndef TESSERA_KERNELS_SUPPORTED_SHAPES_H_
#define TESSERA_KERNELS_SUPPORTED_SHAPES_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tessera {

inline constexpr int32_t kMaxHeadDim = 256;   // even head_dim up to this
inline constexpr int32_t kMaxGqaGroup = 64;   // query heads per KV head
inline constexpr int32_t kMaxLoraRank = 1024;

// OK when attention with these heads runs on every backend; InvalidArgument
// naming the first shape that does not.
inline absl::Status CheckAttentionShapes(int32_t num_q_heads, int32_t num_kv_heads, int32_t head_dim) {
  if (num_kv_heads <= 0 || num_q_heads <= 0 || num_q_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_attention_heads (", num_q_heads,
                                                   ") must be a multiple of num_key_value_heads (", num_kv_heads, ")"));
  }
  if (num_q_heads / num_kv_heads > kMaxGqaGroup) {
    return absl::InvalidArgumentError(absl::StrCat("a GQA group of ", num_q_heads / num_kv_heads,
                                                   " query heads per KV head is over the supported ", kMaxGqaGroup));
  }
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim ", head_dim, " must be even and at most ", kMaxHeadDim));
  }
  return absl::OkStatus();
}

}  // namespace tessera

#endif  // TESSERA_KERNELS_SUPPORTED_SHAPES_H_
