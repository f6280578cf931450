#include "server/scheduler/kv_block_manager.h"

#include <set>

#include "gtest/gtest.h"

namespace tessera {

class KvBlockManagerTestPeer {
 public:
  // Records page `b` as held by `seq`, as a stray write would.
  static void SetOwner(KvBlockManager& kv, int32_t b, uint64_t seq) { kv.owner_[b] = seq; }
};

namespace {

TEST(KvBlockManagerTest, TablesGrowByAppendingAndPagesGoBackOnRelease) {
  KvBlockManager kv(/*num_blocks=*/6, /*block_size=*/2);
  EXPECT_EQ(kv.BlocksFor(5), 3);
  ASSERT_TRUE(kv.Append(7, 2).ok());
  const std::vector<int32_t> first(kv.Table(7).begin(), kv.Table(7).end());
  ASSERT_TRUE(kv.Append(8, 3).ok());
  ASSERT_TRUE(kv.Append(7, 1).ok());
  // Appending keeps the pages a sequence already had, in place.
  ASSERT_EQ(kv.Table(7).size(), 3u);
  EXPECT_EQ(kv.Table(7)[0], first[0]);
  EXPECT_EQ(kv.Table(7)[1], first[1]);
  std::set<int32_t> all(kv.Table(7).begin(), kv.Table(7).end());
  all.insert(kv.Table(8).begin(), kv.Table(8).end());
  EXPECT_EQ(all.size(), 6u);  // no page in two tables
  EXPECT_EQ(kv.free_blocks(), 0);
  EXPECT_EQ(kv.used_blocks(), 6);
  EXPECT_EQ(kv.Append(9, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(kv.Holds(9));
  kv.Release(7);
  EXPECT_FALSE(kv.Holds(7));
  EXPECT_TRUE(kv.Table(7).empty());
  EXPECT_EQ(kv.free_blocks(), 3);
  kv.Release(8);
  EXPECT_EQ(kv.free_blocks(), 6);
}

TEST(KvBlockManagerDeathTest, ReleasingTwiceIsACheckFailure) {
  KvBlockManager kv(4, 2);
  ASSERT_TRUE(kv.Append(1, 2).ok());
  kv.Release(1);
  EXPECT_DEATH(kv.Release(1), "released but it holds none \\(double free\\)");
  EXPECT_DEATH(kv.Release(42), "double free");
}

TEST(KvBlockManagerDeathTest, APageRecordedForAnotherSequenceIsACheckFailure) {
  KvBlockManager kv(4, 2);
  ASSERT_TRUE(kv.Append(1, 2).ok());
  ASSERT_TRUE(kv.Append(2, 1).ok());
  KvBlockManagerTestPeer::SetOwner(kv, kv.Table(1)[1], 2);
  EXPECT_DEATH(kv.Release(1), "in the table of sequence 1 is held by sequence 2");
  KvBlockManagerTestPeer::SetOwner(kv, kv.Table(1)[1], ~uint64_t{0});
  EXPECT_DEATH(kv.Release(1), "is already free");
}

}  // namespace
}  // namespace tessera
