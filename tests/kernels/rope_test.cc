// rope: plain, RoPE-ID (a subset of channels rotated) and the ladders that
// llama3 and linear scaling produce, at positions large enough that an fp32
// angle would lose precision.
#include <cmath>

#include "gtest/gtest.h"
#include "model/model_config.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using RopeTest = OpTest;

void ReferenceRotate(std::vector<double>& v, int64_t rows, int heads, int head_dim, int rotary,
                     const std::vector<int32_t>& pos, const std::vector<float>& inv_freq) {
  const int half = rotary / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      double* x = &v[(r * heads + h) * head_dim];
      for (int i = 0; i < half; ++i) {
        const double angle = static_cast<double>(pos[r]) * double{inv_freq[i]};
        const double c = std::cos(angle), s = std::sin(angle);
        const double x1 = x[i], x2 = x[i + half];
        x[i] = x1 * c - x2 * s;
        x[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

void CheckRope(TestBackend& b, std::mt19937& rng, int64_t rows, int q_heads, int kv_heads, int head_dim,
               int rotary, const std::vector<float>& inv_freq, int32_t max_pos) {
  const std::vector<float> q = RandomVector(rng, size_t(rows) * q_heads * head_dim);
  const std::vector<float> k = RandomVector(rng, size_t(rows) * kv_heads * head_dim);
  std::vector<int32_t> pos(rows);
  for (int64_t r = 0; r < rows; ++r) pos[r] = static_cast<int32_t>((r * 104729) % (max_pos + 1));
  pos[0] = max_pos;
  std::vector<double> qr(q.begin(), q.end()), kr(k.begin(), k.end());
  ReferenceRotate(qr, rows, q_heads, head_dim, rotary, pos, inv_freq);
  ReferenceRotate(kr, rows, kv_heads, head_dim, rotary, pos, inv_freq);
  RopeArgs a;
  float* qd = b.Upload(q);
  float* kd = b.Upload(k);
  a.q = qd;
  a.k = kd;
  a.positions = b.Upload(pos);
  a.inv_freq = b.Upload(inv_freq);
  a.rows = rows;
  a.num_q_heads = q_heads;
  a.num_kv_heads = kv_heads;
  a.head_dim = head_dim;
  a.rotary_dims = rotary;
  ASSERT_TRUE(b.ops().rope(a, b.ctx()).ok());
  EXPECT_LT(Nmse(b.Download(qd, q.size()), qr), NmseTolerance(DType::kF32)) << "q rotary=" << rotary;
  EXPECT_LT(Nmse(b.Download(kd, k.size()), kr), NmseTolerance(DType::kF32)) << "k rotary=" << rotary;
  // Channels past rotary_dims are untouched, bit for bit.
  const std::vector<float> qg = b.Download(qd, q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    if (int(i % head_dim) >= rotary) ASSERT_EQ(qg[i], q[i]);
  }
}

std::vector<float> Ladder(int rotary, int head_dim, double theta) {
  std::vector<float> f(rotary / 2);
  for (int i = 0; i < rotary / 2; ++i) f[i] = static_cast<float>(std::pow(theta, -2.0 * i / head_dim));
  return f;
}

TEST_P(RopeTest, PlainRopeWithGqaAndLargePositions) {
  CheckRope(backend(), rng_, 1, 1, 1, 2, 2, Ladder(2, 2, 10000), 7);
  CheckRope(backend(), rng_, 13, 8, 2, 64, 64, Ladder(64, 64, 10000), 131071);
  CheckRope(backend(), rng_, 5, 6, 6, 128, 128, Ladder(128, 128, 500000), 1 << 20);
  CheckRope(backend(), rng_, 3, 4, 1, 256, 256, Ladder(256, 256, 1e6), 1 << 24);
}

TEST_P(RopeTest, RopeIdRotatesOnlyTheHighestFrequencies) {
  for (const int rotary : {2, 16, 48}) {
    CheckRope(backend(), rng_, 11, 4, 2, 64, rotary, Ladder(rotary, 64, 10000), 1 << 22);
  }
}

TEST_P(RopeTest, Llama3AndLinearScaledLadders) {
  ModelConfig c;
  c.hidden_size = 512;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 128;
  c.rope_theta = 500000;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position_embeddings = 8192;
  const std::vector<float> llama3 = ComputeRopeInvFreq(c);
  // llama3's rule, written out: long wavelengths divided by the factor, short
  // ones kept, a smooth blend between.
  ASSERT_EQ(llama3.size(), 64u);
  for (int i = 0; i < 64; ++i) {
    const double f = std::pow(500000.0, -2.0 * i / 128);
    const double wavelen = 2 * M_PI / f;
    const double low = 8192.0 / 1, high = 8192.0 / 4;
    double want = f;
    if (wavelen > low) {
      want = f / 8;
    } else if (wavelen >= high) {
      const double smooth = (8192.0 / wavelen - 1) / (4 - 1);
      want = (1 - smooth) * f / 8 + smooth * f;
    }
    EXPECT_NEAR(llama3[i], want, 1e-6 * want) << i;
  }
  CheckRope(backend(), rng_, 7, 4, 2, 128, 128, llama3, 131071);
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4;
  const std::vector<float> linear = ComputeRopeInvFreq(c);
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(linear[i], std::pow(500000.0, -2.0 * i / 128) / 4, 1e-6 * linear[i]);
  CheckRope(backend(), rng_, 7, 4, 2, 128, 128, linear, 32767);
}

TEST_P(RopeTest, RefusesOddOrOversizedHeads) {
  std::vector<float> q(8), inv(4);
  std::vector<int32_t> pos(1);
  RopeArgs a;
  a.q = backend().Upload(q);
  a.k = backend().Upload(q);
  a.positions = backend().Upload(pos);
  a.inv_freq = backend().Upload(inv);
  a.rows = 1;
  a.num_q_heads = 1;
  a.num_kv_heads = 1;
  for (const auto& [head_dim, rotary] : {std::pair{7, 0}, {512, 0}, {8, 3}, {8, 10}}) {
    a.head_dim = head_dim;
    a.rotary_dims = rotary;
    EXPECT_EQ(backend().ops().rope(a, backend().ctx()).code(), absl::StatusCode::kInvalidArgument)
        << head_dim << " " << rotary;
  }
}

TESSERA_INSTANTIATE_OP_TEST(RopeTest);

}  // namespace
}  // namespace tessera::testing
