#include <cmath>

#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using RmsNormTest = OpTest;

std::vector<double> Reference(const std::vector<float>& x, const std::vector<float>& w, int rows, int dim,
                              double eps) {
  std::vector<double> y(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double{x[size_t(r) * dim + i]} * x[size_t(r) * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i) y[size_t(r) * dim + i] = w[i] * (x[size_t(r) * dim + i] * inv);
  }
  return y;
}

TEST_P(RmsNormTest, MatchesTheReference) {
  for (const auto& [rows, dim] : {std::pair{1, 1}, {3, 7}, {17, 64}, {64, 255}, {5, 2048}}) {
    for (const double eps : {1e-6, 1e-5}) {
      std::vector<float> x = RandomVector(rng_, size_t(rows) * dim, -3, 3);
      x[0] = 0.0f;
      const std::vector<float> w = RandomVector(rng_, dim, 0.5, 1.5);
      float* y = backend().Upload(std::vector<float>(x.size()));
      RmsNormArgs a{backend().Upload(x), backend().Upload(w), y, DType::kF32, rows, dim, float(eps)};
      ASSERT_TRUE(backend().ops().rms_norm(a, backend().ctx()).ok());
      EXPECT_LT(Nmse(backend().Download(y, x.size()), Reference(x, w, rows, dim, float(eps))),
                NmseTolerance(DType::kF32))
          << rows << "x" << dim;
    }
  }
}

TEST_P(RmsNormTest, InPlace) {
  const int rows = 9, dim = 33;
  const std::vector<float> x = RandomVector(rng_, size_t(rows) * dim);
  const std::vector<float> w = RandomVector(rng_, dim);
  float* xy = backend().Upload(x);
  RmsNormArgs a{xy, backend().Upload(w), xy, DType::kF32, rows, dim, 1e-5f};
  ASSERT_TRUE(backend().ops().rms_norm(a, backend().ctx()).ok());
  EXPECT_LT(Nmse(backend().Download(xy, x.size()), Reference(x, w, rows, dim, 1e-5f)), NmseTolerance(DType::kF32));
}

TEST_P(RmsNormTest, RefusesBadArguments) {
  std::vector<float> x(4);
  RmsNormArgs a{backend().Upload(x), nullptr, backend().Upload(x), DType::kF32, 1, 4, 1e-5f};
  EXPECT_EQ(backend().ops().rms_norm(a, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
}

TESSERA_INSTANTIATE_OP_TEST(RmsNormTest);

}  // namespace
}  // namespace tessera::testing
