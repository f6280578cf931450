#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using EmbeddingTest = OpTest;

TEST_P(EmbeddingTest, CopiesTheRowOfEachId) {
  for (const auto& [vocab, dim, rows] : {std::tuple{1, 1, 1}, {7, 13, 5}, {512, 64, 33}, {1000, 127, 64}}) {
    const std::vector<float> table = RandomVector(rng_, size_t(vocab) * dim);
    std::vector<int32_t> ids(rows);
    for (int r = 0; r < rows; ++r) ids[r] = (r * 7919 + 3) % vocab;
    ids[0] = vocab - 1;
    float* out = backend().Upload(std::vector<float>(size_t(rows) * dim, -7.0f));
    EmbeddingArgs a{backend().Upload(table), backend().Upload(ids), out, DType::kF32, rows, vocab, dim};
    ASSERT_TRUE(backend().ops().embedding(a, backend().ctx()).ok());
    const std::vector<float> got = backend().Download(out, size_t(rows) * dim);
    for (int r = 0; r < rows; ++r) {
      for (int d = 0; d < dim; ++d) ASSERT_EQ(got[size_t(r) * dim + d], table[size_t(ids[r]) * dim + d]);
    }
  }
}

TEST_P(EmbeddingTest, RefusesAnIdOutsideTheVocabulary) {
  const std::vector<float> table(4 * 2, 1.0f);
  for (int32_t bad : {-1, 4}) {
    std::vector<int32_t> ids = {0, bad};
    float* out = backend().Upload(std::vector<float>(4));
    EmbeddingArgs a{backend().Upload(table), backend().Upload(ids), out, DType::kF32, 2, 4, 2};
    EXPECT_EQ(backend().ops().embedding(a, backend().ctx()).code(), absl::StatusCode::kInternal);
  }
}

TESSERA_INSTANTIATE_OP_TEST(EmbeddingTest);

}  // namespace
}  // namespace tessera::testing
