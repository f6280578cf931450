// BatchPlan: the scheduler's description of one step. PlanBuilder
// (plan_builder.h) validates it and flattens it into the PlanView that the
// engine and every backend's ops read; they decide nothing themselves.
//
// Layout of one step: the tokens of all sequences are flattened into rows
// [0, num_tokens). Sequence s owns rows [query_begin, query_begin + query_len)
// and, before this step, already has kv_len entries in the KV cache. Row i of
// sequence s is written to cache slot kv_len + (i - query_begin) and attends to
// slots [0, kv_len + (i - query_begin)] (causal). Positions are independent of
// cache slots: positions[row] is what RoPE sees, so gaps and offsets are legal.
#ifndef TESSERA_KERNELS_BATCH_PLAN_H_
#define TESSERA_KERNELS_BATCH_PLAN_H_

#include <cstdint>
#include <vector>

namespace tessera {

struct SequencePlan {
  int32_t query_begin = 0;  // first row of this sequence in the step
  int32_t query_len = 0;    // rows this step (prompt chunk, or 1 when decoding)
  int32_t kv_len = 0;       // cache entries present before this step
  // Physical cache block of each logical block; must cover kv_len + query_len.
  std::vector<int32_t> block_table;
  bool needs_logits = false;  // produce logits for the last row
};

// Rows [row_begin, row_begin + row_count) share one adapter: `slot` is its
// slot in the adapter pool (adapters/adapter_pool.h), carried by the pin the
// request holds. Rows in no segment run the base model.
struct AdapterSegment {
  int32_t row_begin = 0;
  int32_t row_count = 0;
  int32_t slot = -1;
};

struct BatchPlan {
  std::vector<int32_t> token_ids;  // [num_tokens]
  std::vector<int32_t> positions;  // [num_tokens], integer RoPE positions
  std::vector<SequencePlan> sequences;
  std::vector<AdapterSegment> adapter_segments;

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_logit_rows() const {
    int32_t n = 0;
    for (const SequencePlan& s : sequences) n += s.needs_logits ? 1 : 0;
    return n;
  }
};

}  // namespace tessera

#endif  // TESSERA_KERNELS_BATCH_PLAN_H_
