// diablo_apply: block-diagonal updates with zero padding of the input
// (blocks·d1 > in) and truncation of the output (blocks·d2 > out), over every
// adapter mix.
#include <algorithm>

#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using DiabloApplyTest = OpTest;

TEST_P(DiabloApplyTest, EveryMixMatchesTheReference) {
  struct Shape {
    int in, out, blocks, d1, d2;
  };
  for (const Shape sh : {Shape{8, 8, 2, 4, 4}, Shape{64, 96, 8, 8, 12}, Shape{65, 33, 5, 14, 7},
                         Shape{100, 100, 3, 40, 34}}) {
    for (const AdapterMix mix : kAllMixes) {
      const int rows = 41, slots = 5;
      std::vector<DiabloSlotWeights> w(slots);
      std::vector<std::vector<float>> blk(slots);
      for (int k = 0; k < slots; ++k) {
        if (k == 2) continue;  // does not target the module
        blk[k] = RandomVector(rng_, size_t(sh.blocks) * sh.d1 * sh.d2);
        w[k] = {backend().Upload(blk[k]), sh.blocks, sh.d1, sh.d2};
      }
      const std::vector<AdapterSegment> segs = MixSegments(rng_, mix, rows, slots);
      TestPlan t = MakePlan(rng_, {{rows, 0}}, 16, 8, segs, std::vector<AdapterOp>(slots, AdapterOp::kBlockDiagonal));
      const std::vector<float> x = RandomVector(rng_, size_t(rows) * sh.in);
      const std::vector<float> y0 = RandomVector(rng_, size_t(rows) * sh.out);
      std::vector<double> ref(y0.begin(), y0.end());
      for (const AdapterSegment& s : segs) {
        if (!w[s.slot].block) continue;
        for (int r = s.row_begin; r < s.row_begin + s.row_count; ++r) {
          for (int b = 0; b < sh.blocks; ++b) {
            for (int o = 0; o < sh.d2 && b * sh.d2 + o < sh.out; ++o) {
              double acc = 0;
              for (int j = 0; j < sh.d1 && b * sh.d1 + j < sh.in; ++j) {
                acc += double{x[size_t(r) * sh.in + b * sh.d1 + j]} * blk[s.slot][(size_t(b) * sh.d1 + j) * sh.d2 + o];
              }
              ref[size_t(r) * sh.out + b * sh.d2 + o] += acc;
            }
          }
        }
      }
      float* y = backend().Upload(y0);
      DiabloApplyArgs args{backend().Upload(x), y, DType::kF32, sh.in, sh.out,
                           &t.view.segments_of(AdapterOp::kBlockDiagonal), backend().Upload(w), slots};
      ASSERT_TRUE(backend().ops().diablo_apply(args, backend().ctx()).ok());
      EXPECT_LT(Nmse(backend().Download(y, y0.size()), ref), NmseTolerance(DType::kF32))
          << AdapterMixName(mix) << " in=" << sh.in << " out=" << sh.out;
    }
  }
}

TEST_P(DiabloApplyTest, RefusesBlocksThatDoNotCoverTheLayer) {
  TestPlan t = MakePlan(rng_, {{1, 0}}, 16, 4, {{0, 1, 0}}, {AdapterOp::kBlockDiagonal});
  std::vector<float> buf(256);
  const std::vector<DiabloSlotWeights> w = {{backend().Upload(buf), 2, 4, 4}};  // covers 8, layer has 16
  DiabloApplyArgs args{backend().Upload(buf), backend().Upload(buf), DType::kF32, 16, 16,
                       &t.view.segments_of(AdapterOp::kBlockDiagonal), backend().Upload(w), 1};
  EXPECT_EQ(backend().ops().diablo_apply(args, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
}

TESSERA_INSTANTIATE_OP_TEST(DiabloApplyTest);

}  // namespace
}  // namespace tessera::testing
