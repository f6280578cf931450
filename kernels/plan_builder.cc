#include "kernels/plan_builder.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera {

PlanBuilder::PlanBuilder(const PlanLimits& limits) : limits_(limits) {
  const size_t t = static_cast<size_t>(std::max(0, limits.max_tokens));
  const size_t s = static_cast<size_t>(std::max(0, limits.max_seqs));
  for (auto* v : {&tokens_, &positions_, &row_to_seq_, &row_slot_}) v->reserve(t);
  for (auto* v : {&last_page_len_, &logit_rows_}) v->reserve(s);
  qo_indptr_.reserve(s + 1);
  kv_indptr_.reserve(s + 1);
  kv_indices_.reserve(static_cast<size_t>(std::max(0, limits.num_blocks)));
  for (int k = 0; k < kNumAdapterOps; ++k) {
    seg_start_[k].reserve(t);
    seg_len_[k].reserve(t);
    seg_slot_[k].reserve(t);
  }
}

absl::StatusOr<PlanView> PlanBuilder::Build(const BatchPlan& plan, absl::Span<const AdapterOp> slot_ops) {
  const int64_t rows64 = static_cast<int64_t>(plan.token_ids.size());
  if (rows64 == 0) return absl::InvalidArgumentError("plan has no tokens");
  if (rows64 > limits_.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("plan has ", rows64, " tokens; the engine takes at most ",
                                                   limits_.max_tokens, " per step (--max-step-tokens)"));
  }
  const int32_t rows = static_cast<int32_t>(rows64);
  if (plan.positions.size() != plan.token_ids.size()) {
    return absl::InvalidArgumentError("plan positions and token ids differ in length");
  }
  for (int32_t r = 0; r < rows; ++r) {
    if (plan.token_ids[r] < 0 || plan.token_ids[r] >= limits_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", plan.token_ids[r],
                                                     " is outside the vocabulary [0, ", limits_.vocab_size, ")"));
    }
    if (plan.positions[r] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("position ", plan.positions[r], " is negative"));
    }
  }
  tokens_.assign(plan.token_ids.begin(), plan.token_ids.end());
  positions_.assign(plan.positions.begin(), plan.positions.end());
  row_to_seq_.resize(rows);
  qo_indptr_.clear();
  kv_indptr_.clear();
  kv_indices_.clear();
  last_page_len_.clear();
  logit_rows_.clear();
  qo_indptr_.push_back(0);
  kv_indptr_.push_back(0);
  const int32_t bs = limits_.block_size;
  int32_t next_row = 0;
  if (plan.sequences.size() > static_cast<size_t>(limits_.max_seqs)) {
    return absl::InvalidArgumentError(absl::StrCat("plan has ", plan.sequences.size(),
                                                   " sequences; the engine takes at most ", limits_.max_seqs,
                                                   " per step (--max-batch-size)"));
  }
  for (const SequencePlan& s : plan.sequences) {
    if (s.query_begin != next_row || s.query_len < 1 || s.query_len > rows - next_row || s.kv_len < 0) {
      return absl::InvalidArgumentError("plan sequences must cover the rows contiguously, in order");
    }
    const int64_t context = static_cast<int64_t>(s.kv_len) + s.query_len;
    const int64_t pages = (context + bs - 1) / bs;
    if (static_cast<int64_t>(s.block_table.size()) < pages) {
      return absl::InvalidArgumentError(
          absl::StrCat("block table has ", s.block_table.size(), " blocks, ", pages, " needed"));
    }
    if (static_cast<int64_t>(kv_indices_.size()) + pages > limits_.num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan uses more KV pages than the cache's ", limits_.num_blocks));
    }
    for (int64_t p = 0; p < pages; ++p) {
      const int32_t b = s.block_table[p];
      if (b < 0 || b >= limits_.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("block ", b, " is out of range"));
      }
      kv_indices_.push_back(b);
    }
    const int32_t seq = static_cast<int32_t>(qo_indptr_.size()) - 1;
    std::fill(row_to_seq_.begin() + next_row, row_to_seq_.begin() + next_row + s.query_len, seq);
    next_row += s.query_len;
    qo_indptr_.push_back(next_row);
    kv_indptr_.push_back(static_cast<int32_t>(kv_indices_.size()));
    last_page_len_.push_back(static_cast<int32_t>(context - (pages - 1) * bs));
    if (s.needs_logits) logit_rows_.push_back(next_row - 1);
  }
  if (next_row != rows) return absl::InvalidArgumentError("plan sequences do not cover every row");

  row_slot_.assign(rows, -1);
  for (int k = 0; k < kNumAdapterOps; ++k) {
    seg_start_[k].clear();
    seg_len_[k].clear();
    seg_slot_[k].clear();
  }
  const int32_t slots = static_cast<int32_t>(slot_ops.size());
  for (const AdapterSegment& seg : plan.adapter_segments) {
    if (seg.row_begin < 0 || seg.row_count < 1 || seg.row_count > rows - seg.row_begin) {
      return absl::InvalidArgumentError(absl::StrCat("adapter segment rows [", seg.row_begin, ", +", seg.row_count,
                                                     ") fall outside the ", rows, " rows of the step"));
    }
    if (seg.slot < 0 || seg.slot >= slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter segment names slot ", seg.slot, " but ", slots, " adapters are loaded"));
    }
    for (int32_t r = seg.row_begin; r < seg.row_begin + seg.row_count; ++r) {
      if (row_slot_[r] != -1) {
        return absl::InvalidArgumentError(absl::StrCat("row ", r, " is in more than one adapter segment"));
      }
      row_slot_[r] = seg.slot;
    }
    const int k = static_cast<int>(slot_ops[seg.slot]);
    seg_start_[k].push_back(seg.row_begin);
    seg_len_[k].push_back(seg.row_count);
    seg_slot_[k].push_back(seg.slot);
  }

  PlanView v;
  v.num_tokens = rows;
  v.num_seqs = static_cast<int32_t>(plan.sequences.size());
  v.num_logit_rows = static_cast<int32_t>(logit_rows_.size());
  v.block_size = bs;
  v.tokens = tokens_.data();
  v.positions = positions_.data();
  v.row_to_seq = row_to_seq_.data();
  v.qo_indptr = qo_indptr_.data();
  v.kv_indptr = kv_indptr_.data();
  v.kv_indices = kv_indices_.data();
  v.last_page_len = last_page_len_.data();
  v.logit_rows = logit_rows_.data();
  v.row_slot = row_slot_.data();
  for (int k = 0; k < kNumAdapterOps; ++k) {
    v.segments[k] = {static_cast<int32_t>(seg_start_[k].size()), seg_start_[k].data(), seg_len_[k].data(),
                     seg_slot_[k].data()};
  }
  return v;
}

}  // namespace tessera
