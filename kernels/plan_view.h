// PlanView: one step's BatchPlan flattened into plain int32 arrays that any
// backend can read (and a GPU can receive with one copy). Built once per step
// by PlanBuilder (kernels/plan_builder.h); ops read only this, never the
// std::vectors of a BatchPlan.
//
// Rows: the T tokens of the step, sequence by sequence. Sequence s owns rows
// [qo_indptr[s], qo_indptr[s+1]) and the KV pages kv_indices[kv_indptr[s] ..
// kv_indptr[s+1]), of which the last holds last_page_len[s] entries after
// this step (FlashInfer's paged layout). Row r of s is written to cache
// entry kv_len(s) + (r - qo_indptr[s]), where kv_len(s) is what the cache
// held before the step, and attends causally to entries [0, that].
//
// Adapters: rows of one adapter form segments. For each op kind (low-rank,
// block-diagonal, rotation) segment i covers rows [seg_start[i],
// seg_start[i] + seg_len[i]) with adapter slot seg_slot[i]; row_slot[r] is the
// slot of row r, or -1 for the base model. Segments are (start, length)
// pairs, as in vLLM's SGMV, so a kind's segments need not be adjacent.
#ifndef TESSERA_KERNELS_PLAN_VIEW_H_
#define TESSERA_KERNELS_PLAN_VIEW_H_

#include <cstdint>

namespace tessera {

// The op families that apply adapters; an adapter kind maps to one of them
// (LoRA and SEAL: kLowRank; DiaBlo: kBlockDiagonal; RoAd: kRotation).
enum class AdapterOp : int8_t { kLowRank = 0, kBlockDiagonal = 1, kRotation = 2 };
inline constexpr int kNumAdapterOps = 3;

struct AdapterSegments {
  int32_t count = 0;
  const int32_t* start = nullptr;  // [count]
  const int32_t* len = nullptr;    // [count]
  const int32_t* slot = nullptr;   // [count]
};

struct PlanView {
  int32_t num_tokens = 0;      // T
  int32_t num_seqs = 0;        // S
  int32_t num_logit_rows = 0;  // L
  int32_t block_size = 0;      // KV entries per page

  const int32_t* tokens = nullptr;         // [T]
  const int32_t* positions = nullptr;      // [T] RoPE positions
  const int32_t* row_to_seq = nullptr;     // [T]
  const int32_t* qo_indptr = nullptr;      // [S+1]
  const int32_t* kv_indptr = nullptr;      // [S+1]
  const int32_t* kv_indices = nullptr;     // [kv_indptr[S]] physical pages
  const int32_t* last_page_len = nullptr;  // [S], in [1, block_size]
  const int32_t* logit_rows = nullptr;     // [L] rows whose logits are produced
  const int32_t* row_slot = nullptr;       // [T] adapter slot, -1 = base
  AdapterSegments segments[kNumAdapterOps];

  // Cache entries of sequence s after this step.
  int32_t context_len(int32_t s) const {
    return (kv_indptr[s + 1] - kv_indptr[s] - 1) * block_size + last_page_len[s];
  }
  // Cache entries of sequence s before this step.
  int32_t kv_len(int32_t s) const { return context_len(s) - (qo_indptr[s + 1] - qo_indptr[s]); }
  const AdapterSegments& segments_of(AdapterOp op) const { return segments[static_cast<int>(op)]; }
};

}  // namespace tessera

#endif  // TESSERA_KERNELS_PLAN_VIEW_H_
