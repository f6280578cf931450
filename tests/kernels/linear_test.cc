// linear in f32, int8 (per output channel) and int4 (group-wise), against
// weights dequantized by the reference's own reading of the formats.
#include <cmath>

#include "gtest/gtest.h"
#include "model/quantizer.h"
#include "tests/kernels/op_test_util.h"

namespace tessera::testing {
namespace {

using LinearTest = OpTest;

struct Weights {
  std::vector<uint8_t> bytes;  // f32 values, int8 codes or packed int4
  std::vector<float> scales;
  std::vector<double> dequantized;  // [out, in], the reference's reading
};

Weights Quantize(const std::vector<float>& w, WeightFormat f, int64_t out, int64_t in, int32_t group) {
  Weights q;
  q.dequantized.resize(size_t(out) * in);
  if (f == WeightFormat::kF32) {
    q.bytes.resize(w.size() * 4);
    std::memcpy(q.bytes.data(), w.data(), q.bytes.size());
    for (size_t i = 0; i < w.size(); ++i) q.dequantized[i] = w[i];
    return q;
  }
  if (f == WeightFormat::kInt8) {
    q.bytes.resize(size_t(out) * in);
    q.scales.resize(out);
    for (int64_t o = 0; o < out; ++o) {
      QuantizeRowInt8(&w[o * in], in, reinterpret_cast<int8_t*>(&q.bytes[o * in]), &q.scales[o]);
      for (int64_t i = 0; i < in; ++i) {
        q.dequantized[o * in + i] = static_cast<double>(static_cast<int8_t>(q.bytes[o * in + i])) * q.scales[o];
      }
    }
    return q;
  }
  const int64_t row_bytes = (in + 1) / 2, groups = (in + group - 1) / group;
  q.bytes.resize(size_t(out) * row_bytes);
  q.scales.resize(size_t(out) * groups);
  for (int64_t o = 0; o < out; ++o) {
    QuantizeRowInt4(&w[o * in], in, group, &q.bytes[o * row_bytes], &q.scales[o * groups]);
    for (int64_t i = 0; i < in; ++i) {
      const uint8_t b = q.bytes[o * row_bytes + i / 2];
      const int nibble = i % 2 == 0 ? (b & 0xF) : (b >> 4);
      const int v = nibble >= 8 ? nibble - 16 : nibble;
      q.dequantized[o * in + i] = static_cast<double>(v) * q.scales[o * groups + i / group];
    }
  }
  return q;
}

TEST_P(LinearTest, MatchesTheReferenceInEveryFormat) {
  struct Shape {
    int64_t rows, in, out;
    int32_t group;
  };
  for (const WeightFormat f : {WeightFormat::kF32, WeightFormat::kInt8, WeightFormat::kInt4}) {
    for (const Shape s : {Shape{1, 8, 1, 8}, Shape{3, 17, 5, 8}, Shape{1, 64, 96, 32}, Shape{9, 200, 33, 64},
                          Shape{33, 129, 70, 128}, Shape{64, 256, 256, 128}}) {
      for (const bool bias : {false, true}) {
        const std::vector<float> w = RandomVector(rng_, size_t(s.out) * s.in);
        const std::vector<float> x = RandomVector(rng_, size_t(s.rows) * s.in);
        const std::vector<float> b = RandomVector(rng_, s.out);
        const Weights q = Quantize(w, f, s.out, s.in, s.group);
        std::vector<double> ref(size_t(s.rows) * s.out);
        for (int64_t r = 0; r < s.rows; ++r) {
          for (int64_t o = 0; o < s.out; ++o) {
            double acc = bias ? b[o] : 0.0;
            for (int64_t i = 0; i < s.in; ++i) acc += double{x[r * s.in + i]} * q.dequantized[o * s.in + i];
            ref[r * s.out + o] = acc;
          }
        }
        LinearArgs a;
        a.x = backend().Upload(x);
        a.format = f;
        a.weight = backend().Upload(q.bytes);
        a.scales = q.scales.empty() ? nullptr : backend().Upload(q.scales);
        a.group_size = s.group;
        a.bias = bias ? backend().Upload(b) : nullptr;
        float* y = backend().Upload(std::vector<float>(ref.size()));
        a.y = y;
        a.rows = s.rows;
        a.in = s.in;
        a.out = s.out;
        ASSERT_TRUE(backend().ops().linear(a, backend().ctx()).ok());
        EXPECT_LT(Nmse(backend().Download(y, ref.size()), ref), NmseTolerance(DType::kF32))
            << WeightFormatName(f) << " rows=" << s.rows << " in=" << s.in << " out=" << s.out << " bias=" << bias;
      }
    }
  }
}

TEST_P(LinearTest, RefusesBadArguments) {
  std::vector<float> x(8), y(1), s(1);
  std::vector<uint8_t> q(4);
  LinearArgs a;
  a.x = backend().Upload(x);
  a.format = WeightFormat::kInt4;
  a.weight = backend().Upload(q);
  a.scales = backend().Upload(s);
  a.group_size = 12;  // not a multiple of 8
  a.y = backend().Upload(y);
  a.rows = 1;
  a.in = 8;
  a.out = 1;
  EXPECT_EQ(backend().ops().linear(a, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
  a.group_size = 8;
  a.scales = nullptr;
  EXPECT_EQ(backend().ops().linear(a, backend().ctx()).code(), absl::StatusCode::kInvalidArgument);
}

TESSERA_INSTANTIATE_OP_TEST(LinearTest);

}  // namespace
}  // namespace tessera::testing
