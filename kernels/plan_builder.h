// PlanBuilder: validates a BatchPlan and flattens it into a PlanView
// (kernels/plan_view.h). Storage is reserved at construction for the limits,
// so Build allocates nothing.
//
// Thread safety: not thread-safe; one builder per engine-owning thread. The
// view returned by Build points into the builder and stays valid until the
// next Build or the builder's destruction.
#ifndef TESSERA_KERNELS_PLAN_BUILDER_H_
#define TESSERA_KERNELS_PLAN_BUILDER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/batch_plan.h"
#include "kernels/plan_view.h"

namespace tessera {

struct PlanLimits {
  int32_t max_tokens = 0;  // rows per step (the engine's activation arena)
  int32_t max_seqs = 0;    // sequences per step, <= max_tokens
  int32_t vocab_size = 0;
  int32_t num_blocks = 0;  // KV pages in the cache
  int32_t block_size = 0;  // KV entries per page
};

class PlanBuilder {
 public:
  explicit PlanBuilder(const PlanLimits& limits);

  // slot_ops[i] is the op family of adapter slot i. InvalidArgument, naming
  // what is wrong, for: no rows, more rows than max_tokens, ids outside the
  // vocabulary, negative positions, more sequences than max_seqs, sequences that do not cover the rows
  // contiguously in order, block tables too short or naming pages outside the
  // cache, more pages in use than the cache has, adapter segments outside the
  // rows or overlapping, and slots outside slot_ops.
  absl::StatusOr<PlanView> Build(const BatchPlan& plan, absl::Span<const AdapterOp> slot_ops);

  const PlanLimits& limits() const { return limits_; }

 private:
  PlanLimits limits_;
  std::vector<int32_t> tokens_, positions_, row_to_seq_, row_slot_;
  std::vector<int32_t> qo_indptr_, kv_indptr_, kv_indices_, last_page_len_, logit_rows_;
  std::vector<int32_t> seg_start_[kNumAdapterOps], seg_len_[kNumAdapterOps], seg_slot_[kNumAdapterOps];
};

}  // namespace tessera

#endif  // TESSERA_KERNELS_PLAN_BUILDER_H_
