// kv_write: each row lands in its sequence's page and offset, through
// shuffled block tables, and nothing else in the cache changes.
#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using KvCacheWriteTest = OpTest;

TEST_P(KvCacheWriteTest, WritesEachRowAtItsPageAndOffset) {
  for (const int block_size : {1, 4, 16}) {
    const int kv_heads = 2, head_dim = 6, row = kv_heads * head_dim, blocks = 64;
    const std::vector<TestSeq> seqs = {{5, 0}, {1, 17}, {3, 3}, {1, 0}, {7, block_size * 2 - 1}};
    TestPlan t = MakePlan(rng_, seqs, block_size, blocks);
    const int rows = t.plan.num_tokens();
    const std::vector<float> k = RandomVector(rng_, size_t(rows) * row);
    const std::vector<float> v = RandomVector(rng_, size_t(rows) * row);
    const std::vector<float> cache(size_t(blocks) * block_size * row, 42.0f);
    std::vector<float> k_ref = cache, v_ref = cache;
    for (const SequencePlan& s : t.plan.sequences) {
      for (int i = 0; i < s.query_len; ++i) {
        const int entry = s.kv_len + i;
        const size_t dst = (size_t(s.block_table[entry / block_size]) * block_size + entry % block_size) * row;
        std::copy_n(&k[size_t(s.query_begin + i) * row], row, &k_ref[dst]);
        std::copy_n(&v[size_t(s.query_begin + i) * row], row, &v_ref[dst]);
      }
    }
    float* kc = backend().Upload(cache);
    float* vc = backend().Upload(cache);
    KvCacheWriteArgs a;
    a.k = backend().Upload(k);
    a.v = backend().Upload(v);
    a.k_cache = kc;
    a.v_cache = vc;
    a.plan = &t.view;
    a.num_blocks = blocks;
    a.num_kv_heads = kv_heads;
    a.head_dim = head_dim;
    ASSERT_TRUE(backend().ops().kv_write(a, backend().ctx()).ok());
    EXPECT_EQ(backend().Download(kc, cache.size()), k_ref) << "block size " << block_size;
    EXPECT_EQ(backend().Download(vc, cache.size()), v_ref) << "block size " << block_size;
  }
}

TESSERA_INSTANTIATE_OP_TEST(KvCacheWriteTest);

}  // namespace
}  // namespace tessera::testing
