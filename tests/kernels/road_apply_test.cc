// road_apply: the pairwise rotation inside each group of outputs, groups 2
// to out, over every adapter mix.
#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using RoadApplyTest = OpTest;

TEST_P(RoadApplyTest, EveryMixMatchesTheReference) {
  for (const auto& [out, group] : {std::pair{2, 2}, {64, 64}, {96, 8}, {130, 26}}) {
    for (const AdapterMix mix : kAllMixes) {
      const int rows = 50, slots = 6;
      std::vector<RoadSlotWeights> w(slots);
      std::vector<std::vector<float>> c(slots), s(slots);
      for (int k = 0; k < slots; ++k) {
        if (k == 4) continue;  // does not target the module
        c[k] = RandomVector(rng_, out, 0.5, 1.5);
        s[k] = RandomVector(rng_, out, -1, 1);
        w[k] = {backend().Upload(c[k]), backend().Upload(s[k]), group};
      }
      const std::vector<AdapterSegment> segs = MixSegments(rng_, mix, rows, slots);
      TestPlan t = MakePlan(rng_, {{rows, 0}}, 16, 8, segs, std::vector<AdapterOp>(slots, AdapterOp::kRotation));
      const std::vector<float> y0 = RandomVector(rng_, size_t(rows) * out);
      std::vector<double> ref(y0.begin(), y0.end());
      for (const AdapterSegment& sg : segs) {
        if (!w[sg.slot].c) continue;
        for (int r = sg.row_begin; r < sg.row_begin + sg.row_count; ++r) {
          for (int g = 0; g < out; g += group) {
            for (int j = 0; j < group / 2; ++j) {
              const int a = g + j, b = a + group / 2;
              const double ya = y0[size_t(r) * out + a], yb = y0[size_t(r) * out + b];
              ref[size_t(r) * out + a] = c[sg.slot][a] * ya + s[sg.slot][a] * yb;
              ref[size_t(r) * out + b] = c[sg.slot][b] * yb + s[sg.slot][b] * ya;
            }
          }
        }
      }
      float* y = backend().Upload(y0);
      RoadApplyArgs args{y, DType::kF32, out, &t.view.segments_of(AdapterOp::kRotation), backend().Upload(w), slots};
      ASSERT_TRUE(backend().ops().road_apply(args, backend().ctx()).ok());
      EXPECT_LT(Nmse(backend().Download(y, y0.size()), ref), NmseTolerance(DType::kF32))
          << AdapterMixName(mix) << " out=" << out << " group=" << group;
    }
  }
}

TEST_P(RoadApplyTest, RefusesAGroupThatDoesNotDivideTheOutput) {
  TestPlan t = MakePlan(rng_, {{1, 0}}, 16, 4, {{0, 1, 0}}, {AdapterOp::kRotation});
  std::vector<float> buf(12);
  const std::vector<RoadSlotWeights> w = {{backend().Upload(buf), backend().Upload(buf), 8}};
  RoadApplyArgs args{backend().Upload(buf), DType::kF32, 12, &t.view.segments_of(AdapterOp::kRotation),
                     backend().Upload(w), 1};
  EXPECT_EQ(backend().ops().road_apply(args, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
}

TESSERA_INSTANTIATE_OP_TEST(RoadApplyTest);

}  // namespace
}  // namespace tessera::testing
