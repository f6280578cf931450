// lora_apply (shrink then expand) over every adapter mix, heterogeneous
// ranks, slots that do not target the module, and base rows left alone.
#include "gtest/gtest.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using LoraApplyTest = OpTest;

TEST_P(LoraApplyTest, EveryMixMatchesTheReference) {
  const std::vector<int32_t> ranks = {8, 1, 16, 3, 64, 4, 2, 32};
  for (const auto& [rows, in, out] : {std::tuple{1, 8, 8}, {37, 64, 96}, {64, 127, 65}, {129, 256, 33}}) {
    for (const AdapterMix mix : kAllMixes) {
      const int32_t slots = static_cast<int32_t>(ranks.size());
      std::vector<LoraSlotWeights> w(slots);
      std::vector<std::vector<float>> a(slots), b(slots);
      for (int32_t k = 0; k < slots; ++k) {
        if (k == 5) continue;  // this adapter does not target the module
        a[k] = RandomVector(rng_, size_t(ranks[k]) * in);
        b[k] = RandomVector(rng_, size_t(out) * ranks[k]);
        w[k] = {backend().Upload(a[k]), backend().Upload(b[k]), ranks[k], 0.25f * (k + 1)};
      }
      const std::vector<AdapterSegment> segs = MixSegments(rng_, mix, rows, slots);
      TestPlan t = MakePlan(rng_, {{rows, 0}}, 16, 64, segs, std::vector<AdapterOp>(slots, AdapterOp::kLowRank));
      const std::vector<float> x = RandomVector(rng_, size_t(rows) * in);
      const std::vector<float> y0 = RandomVector(rng_, size_t(rows) * out);
      std::vector<double> ref(y0.begin(), y0.end());
      for (const AdapterSegment& s : segs) {
        if (!w[s.slot].a) continue;
        for (int r = s.row_begin; r < s.row_begin + s.row_count; ++r) {
          std::vector<double> tk(ranks[s.slot]);
          for (int k = 0; k < ranks[s.slot]; ++k) {
            for (int i = 0; i < in; ++i) tk[k] += double{a[s.slot][size_t(k) * in + i]} * x[size_t(r) * in + i];
          }
          for (int o = 0; o < out; ++o) {
            double acc = 0;
            for (int k = 0; k < ranks[s.slot]; ++k) acc += double{b[s.slot][size_t(o) * ranks[s.slot] + k]} * tk[k];
            ref[size_t(r) * out + o] += double{w[s.slot].scale} * acc;
          }
        }
      }
      float* y = backend().Upload(y0);
      const std::vector<LoraSlotWeights> slot_table = w;
      LoraApplyArgs args{backend().Upload(x), y,  DType::kF32, in, out, &t.view.segments_of(AdapterOp::kLowRank),
                         backend().Upload(slot_table), slots};
      ASSERT_TRUE(backend().ops().lora_apply(args, backend().ctx()).ok());
      const std::vector<float> got = backend().Download(y, y0.size());
      EXPECT_LT(Nmse(got, ref), NmseTolerance(DType::kF32)) << AdapterMixName(mix) << " rows=" << rows;
      // Base rows, and rows of the adapter without this module, keep y0 bit for bit.
      for (int r = 0; r < rows; ++r) {
        const int32_t slot = t.view.row_slot[r];
        if (slot != -1 && slot != 5) continue;
        for (int o = 0; o < out; ++o) ASSERT_EQ(got[size_t(r) * out + o], y0[size_t(r) * out + o]) << r;
      }
    }
  }
}

TEST_P(LoraApplyTest, RefusesABadSlot) {
  TestPlan t = MakePlan(rng_, {{2, 0}}, 16, 4, {{0, 2, 0}}, {AdapterOp::kLowRank});
  std::vector<float> buf(64);
  const std::vector<LoraSlotWeights> slots = {{backend().Upload(buf), backend().Upload(buf), kMaxLoraRank + 1, 1}};
  LoraApplyArgs args{backend().Upload(buf), backend().Upload(buf), DType::kF32, 4, 4,
                     &t.view.segments_of(AdapterOp::kLowRank), backend().Upload(slots), 1};
  EXPECT_EQ(backend().ops().lora_apply(args, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
  args.num_slots = 0;  // the segment's slot is outside the table
  EXPECT_EQ(backend().ops().lora_apply(args, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
}

TESSERA_INSTANTIATE_OP_TEST(LoraApplyTest);

}  // namespace
}  // namespace tessera::testing
