#include "server/engine/kv_cache.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(KvCacheTest, BlocksGoBackToTheFreeListOfTheirOwner) {
  KvCache kv(/*num_layers=*/1, /*num_blocks=*/4, /*block_size=*/2, /*num_kv_heads=*/1, /*head_dim=*/2);
  auto a = kv.Allocate(2, /*owner=*/7);
  ASSERT_TRUE(a.ok());
  auto b = kv.Allocate(2, /*owner=*/8);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(kv.free_blocks(), 0);
  EXPECT_EQ(kv.Allocate(1, 9).status().code(), absl::StatusCode::kResourceExhausted);
  kv.Free(*a, 7);
  EXPECT_EQ(kv.free_blocks(), 2);
  kv.Free(*b, 8);
  EXPECT_EQ(kv.free_blocks(), 4);
}

TEST(KvCacheDeathTest, DoubleFreeIsACheckFailure) {
  KvCache kv(1, 4, 2, 1, 2);
  std::vector<int32_t> a = *kv.Allocate(2, 1);
  kv.Free(a, 1);
  EXPECT_DEATH(kv.Free(a, 1), "already free \\(double free\\)");
}

TEST(KvCacheDeathTest, FreeingAnotherSequencesBlockIsACheckFailure) {
  KvCache kv(1, 4, 2, 1, 2);
  std::vector<int32_t> a = *kv.Allocate(2, 1);
  (void)kv.Allocate(1, 2);
  EXPECT_DEATH(kv.Free(a, 2), "held by sequence 1");
  EXPECT_DEATH(kv.Free({99}, 1), "out of range");
}

}  // namespace
}  // namespace tessera
