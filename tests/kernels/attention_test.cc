// attention over the paged cache: causal masking inside a prefill chunk,
// decode rows with long contexts, GQA group sizes 1..8, block sizes that do
// and do not divide the contexts, shuffled pages.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using AttentionTest = OpTest;

struct Case {
  int q_heads, kv_heads, head_dim, block_size;
  std::vector<TestSeq> seqs;
};

void Check(TestBackend& b, std::mt19937& rng, const Case& c) {
  const int blocks = 512;
  TestPlan t = MakePlan(rng, c.seqs, c.block_size, blocks);
  const int rows = t.plan.num_tokens();
  const int64_t kv_row = int64_t{c.kv_heads} * c.head_dim, q_row = int64_t{c.q_heads} * c.head_dim;
  const std::vector<float> k_cache = RandomVector(rng, size_t(blocks) * c.block_size * kv_row, -2, 2);
  const std::vector<float> v_cache = RandomVector(rng, k_cache.size());
  const std::vector<float> q = RandomVector(rng, size_t(rows) * q_row, -2, 2);
  const double scale = 1.0 / std::sqrt(double(c.head_dim));
  std::vector<double> ref(q.size());
  const int group = c.q_heads / c.kv_heads;
  for (const SequencePlan& s : t.plan.sequences) {
    for (int i = 0; i < s.query_len; ++i) {
      const int r = s.query_begin + i, context = s.kv_len + i + 1;
      for (int h = 0; h < c.q_heads; ++h) {
        const int kvh = h / group;
        std::vector<double> p(context);
        double mx = -1e300;
        for (int e = 0; e < context; ++e) {
          const size_t off =
              (size_t(s.block_table[e / c.block_size]) * c.block_size + e % c.block_size) * kv_row + size_t(kvh) * c.head_dim;
          double dot = 0;
          for (int d = 0; d < c.head_dim; ++d) dot += double{q[r * q_row + h * c.head_dim + d]} * k_cache[off + d];
          p[e] = dot * scale;
          mx = std::max(mx, p[e]);
        }
        double den = 0;
        for (double& x : p) den += (x = std::exp(x - mx));
        for (int e = 0; e < context; ++e) {
          const size_t off =
              (size_t(s.block_table[e / c.block_size]) * c.block_size + e % c.block_size) * kv_row + size_t(kvh) * c.head_dim;
          for (int d = 0; d < c.head_dim; ++d) ref[r * q_row + h * c.head_dim + d] += p[e] / den * v_cache[off + d];
        }
      }
    }
  }
  AttentionArgs a;
  a.q = b.Upload(q);
  a.k_cache = b.Upload(k_cache);
  a.v_cache = b.Upload(v_cache);
  float* out = b.Upload(std::vector<float>(q.size()));
  a.out = out;
  a.plan = &t.view;
  a.num_q_heads = c.q_heads;
  a.num_kv_heads = c.kv_heads;
  a.head_dim = c.head_dim;
  a.scale = static_cast<float>(scale);
  ASSERT_TRUE(b.ops().attention(a, b.ctx()).ok());
  EXPECT_LT(Nmse(b.Download(out, q.size()), ref), NmseTolerance(DType::kF32))
      << c.q_heads << "/" << c.kv_heads << " heads, head_dim " << c.head_dim << ", block " << c.block_size;
}

TEST_P(AttentionTest, PrefillChunksAndDecodeRowsMatchTheReference) {
  Check(backend(), rng_, {1, 1, 2, 1, {{1, 0}}});
  Check(backend(), rng_, {4, 4, 16, 16, {{9, 0}, {1, 40}, {5, 11}}});
  Check(backend(), rng_, {8, 2, 64, 16, {{17, 0}, {1, 300}, {1, 15}, {33, 47}}});
  Check(backend(), rng_, {8, 1, 128, 7, {{3, 100}, {1, 1}, {12, 0}}});
  Check(backend(), rng_, {6, 3, 32, 32, {{1, 1000}, {1, 31}, {1, 32}, {64, 0}}});
}

TEST_P(AttentionTest, RefusesHeadsThatDoNotGroup) {
  TestPlan t = MakePlan(rng_, {{1, 0}}, 4, 4);
  std::vector<float> buf(1024);
  AttentionArgs a;
  a.q = a.k_cache = a.v_cache = backend().Upload(buf);
  a.out = backend().Upload(buf);
  a.plan = &t.view;
  a.num_q_heads = 6;
  a.num_kv_heads = 4;
  a.head_dim = 8;
  EXPECT_EQ(backend().ops().attention(a, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
}

TESSERA_INSTANTIATE_OP_TEST(AttentionTest);

}  // namespace
}  // namespace tessera::testing
