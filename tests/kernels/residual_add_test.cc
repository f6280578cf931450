#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using ResidualAddTest = OpTest;

TEST_P(ResidualAddTest, AddsElementWise) {
  for (const int n : {1, 3, 65536, 65537, 300001}) {
    const std::vector<float> x = RandomVector(rng_, n);
    const std::vector<float> d = RandomVector(rng_, n);
    float* xd = backend().Upload(x);
    ASSERT_TRUE(backend().ops().residual_add({xd, backend().Upload(d), DType::kF32, n}, backend().ctx()).ok());
    const std::vector<float> got = backend().Download(xd, n);
    for (int i = 0; i < n; ++i) ASSERT_EQ(got[i], x[i] + d[i]) << i;
  }
}

TEST_P(ResidualAddTest, RefusesOtherDtypesOnTheCpu) {
  if (GetParam() != "cpu") GTEST_SKIP();
  std::vector<float> x(2);
  EXPECT_EQ(backend().ops().residual_add({backend().Upload(x), backend().Upload(x), DType::kBF16, 2}, backend().ctx())
                .code(),
            absl::StatusCode::kUnimplemented);
}

TESSERA_INSTANTIATE_OP_TEST(ResidualAddTest);

}  // namespace
}  // namespace tessera::testing
