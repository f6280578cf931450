// PlanBuilder: the flat arrays of a valid plan, and a clear refusal of every
// malformed one.
#include "gtest/gtest.h"
#include "kernels/plan_builder.h"

namespace tessera {
namespace {

PlanLimits Limits() { return {16, 4, 100, 10, 4}; }

BatchPlan TwoSequences() {
  BatchPlan p;
  p.token_ids = {1, 2, 3, 4, 5};
  p.positions = {0, 1, 2, 9, 7};
  p.sequences.push_back({0, 3, 0, {7, 2}, true});       // 3 entries: page 7
  p.sequences.push_back({3, 2, 5, {4, 0, 9, 3}, false}); // 7 entries: pages 4, 0
  p.adapter_segments = {{0, 3, 1}, {3, 2, 0}};
  return p;
}

TEST(PlanBuilderTest, FlattensAValidPlan) {
  PlanBuilder b(Limits());
  const std::vector<AdapterOp> ops = {AdapterOp::kRotation, AdapterOp::kLowRank};
  absl::StatusOr<PlanView> v = b.Build(TwoSequences(), ops);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->num_tokens, 5);
  EXPECT_EQ(v->num_seqs, 2);
  EXPECT_EQ(v->num_logit_rows, 1);
  EXPECT_EQ(std::vector<int32_t>(v->row_to_seq, v->row_to_seq + 5), (std::vector<int32_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(std::vector<int32_t>(v->qo_indptr, v->qo_indptr + 3), (std::vector<int32_t>{0, 3, 5}));
  EXPECT_EQ(std::vector<int32_t>(v->kv_indptr, v->kv_indptr + 3), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(std::vector<int32_t>(v->kv_indices, v->kv_indices + 3), (std::vector<int32_t>{7, 4, 0}));
  EXPECT_EQ(v->last_page_len[0], 3);
  EXPECT_EQ(v->last_page_len[1], 3);
  EXPECT_EQ(v->kv_len(0), 0);
  EXPECT_EQ(v->kv_len(1), 5);
  EXPECT_EQ(v->context_len(1), 7);
  EXPECT_EQ(v->logit_rows[0], 2);
  EXPECT_EQ(std::vector<int32_t>(v->row_slot, v->row_slot + 5), (std::vector<int32_t>{1, 1, 1, 0, 0}));
  const AdapterSegments& lr = v->segments_of(AdapterOp::kLowRank);
  ASSERT_EQ(lr.count, 1);
  EXPECT_EQ(lr.start[0], 0);
  EXPECT_EQ(lr.len[0], 3);
  EXPECT_EQ(lr.slot[0], 1);
  EXPECT_EQ(v->segments_of(AdapterOp::kRotation).count, 1);
  EXPECT_EQ(v->segments_of(AdapterOp::kBlockDiagonal).count, 0);
}

TEST(PlanBuilderTest, RefusesMalformedPlans) {
  const std::vector<AdapterOp> ops = {AdapterOp::kRotation, AdapterOp::kLowRank};
  struct Case {
    const char* what;
    void (*mutate)(BatchPlan&);
    const char* message;
  };
  const Case cases[] = {
      {"no rows", [](BatchPlan& p) { p = BatchPlan(); }, "no tokens"},
      {"too many rows", [](BatchPlan& p) { p.token_ids.resize(17); p.positions.resize(17); }, "at most 16"},
      {"id", [](BatchPlan& p) { p.token_ids[1] = 100; }, "outside the vocabulary"},
      {"position", [](BatchPlan& p) { p.positions[0] = -1; }, "negative"},
      {"lengths", [](BatchPlan& p) { p.positions.pop_back(); }, "differ in length"},
      {"gap", [](BatchPlan& p) { p.sequences[1].query_begin = 4; }, "contiguously"},
      {"uncovered", [](BatchPlan& p) { p.sequences[1].query_len = 1; }, "do not cover"},
      {"short table", [](BatchPlan& p) { p.sequences[1].block_table = {4}; }, "2 needed"},
      {"page", [](BatchPlan& p) { p.sequences[0].block_table[0] = 10; }, "out of range"},
      {"segment rows", [](BatchPlan& p) { p.adapter_segments[1].row_count = 3; }, "fall outside"},
      {"overlap", [](BatchPlan& p) { p.adapter_segments[1].row_begin = 2; }, "more than one adapter segment"},
      {"slot", [](BatchPlan& p) { p.adapter_segments[0].slot = 2; }, "names slot 2"},
      {"sequences", [](BatchPlan& p) {
         for (int i = 0; i < 4; ++i) {
           p.sequences.push_back({p.num_tokens(), 1, 0, {i + 5}, true});
           p.token_ids.push_back(1);
           p.positions.push_back(0);
         }
       }, "at most 4"},
  };
  for (const Case& c : cases) {
    PlanBuilder b(Limits());
    BatchPlan p = TwoSequences();
    c.mutate(p);
    absl::StatusOr<PlanView> v = b.Build(p, ops);
    ASSERT_FALSE(v.ok()) << c.what;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(v.status().message().find(c.message), std::string::npos) << c.what << ": " << v.status();
  }
}

TEST(PlanBuilderTest, RefusesMorePagesThanTheCacheHas) {
  PlanBuilder b({16, 4, 100, 3, 4});
  BatchPlan p;
  p.token_ids = {1, 1};
  p.positions = {0, 0};
  p.sequences.push_back({0, 1, 8, {0, 1, 2}, true});  // 9 entries: 3 pages
  p.sequences.push_back({1, 1, 0, {0}, true});        // one more
  absl::StatusOr<PlanView> v = b.Build(p, {});
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("more KV pages"), std::string::npos) << v.status();
}

}  // namespace
}  // namespace tessera
