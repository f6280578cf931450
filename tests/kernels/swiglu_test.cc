#include <cmath>

#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using SwiGluTest = OpTest;

TEST_P(SwiGluTest, MatchesTheReferenceOutOfPlaceAndInPlace) {
  for (const int n : {1, 7, 1000, 65537, 200003}) {
    const std::vector<float> gate = RandomVector(rng_, n, -8, 8);
    const std::vector<float> up = RandomVector(rng_, n, -2, 2);
    std::vector<double> ref(n);
    for (int i = 0; i < n; ++i) ref[i] = gate[i] / (1.0 + std::exp(-double{gate[i]})) * up[i];
    float* out = backend().Upload(std::vector<float>(n));
    ASSERT_TRUE(backend()
                    .ops()
                    .swiglu({backend().Upload(gate), backend().Upload(up), out, DType::kF32, n}, backend().ctx())
                    .ok());
    EXPECT_LT(Nmse(backend().Download(out, n), ref), NmseTolerance(DType::kF32)) << n;
    float* g = backend().Upload(gate);
    ASSERT_TRUE(backend().ops().swiglu({g, backend().Upload(up), g, DType::kF32, n}, backend().ctx()).ok());
    EXPECT_LT(Nmse(backend().Download(g, n), ref), NmseTolerance(DType::kF32)) << n;
  }
}

TESSERA_INSTANTIATE_OP_TEST(SwiGluTest);

}  // namespace
}  // namespace tessera::testing
