// int8 / int4 weight-only quantization against the fixtures' dequantized
// references (expected.json "quantized"), and the quantized kernels.
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vector_isa.h"
#include "server/engine/engine.h"
#include "server/engine/sampler.h"
#include "model/model.h"
#include "tests/support/fixtures.h"
#include "tests/support/kv_pages.h"

namespace tessera {
namespace {

using testing::ExpectedTensor;
using testing::MaxAbsDiff;
using testing::PromptIds;

const char* kModules[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const LinearWeights& Module(const Model& m, int layer, const std::string& name) {
  const LayerWeights& L = m.layers[layer];
  if (name == "self_attn.q_proj") return L.q_proj;
  if (name == "self_attn.k_proj") return L.k_proj;
  if (name == "self_attn.v_proj") return L.v_proj;
  if (name == "self_attn.o_proj") return L.o_proj;
  if (name == "mlp.gate_proj") return L.gate_proj;
  if (name == "mlp.up_proj") return L.up_proj;
  return L.down_proj;
}

std::unique_ptr<Model> Load(WeightFormat format, int32_t group) {
  LoadOptions o;
  o.quant = {format, group};
  auto m = LoadModel(testing::TinyLlamaModelDir(), o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

struct GenerationRun {
  std::vector<float> logits;    // last prompt position
  std::vector<int32_t> greedy;  // 16 tokens
};

GenerationRun Generate(const Model& model, int prompt) {
  EngineOptions eo;
  eo.num_threads = 2;
  eo.kv_cache_tokens = 256;
  auto engine = *Engine::Create(model, eo);
  testing::KvPages pages(*engine);
  std::vector<int32_t> blocks = *pages.Take(128);
  std::vector<int32_t> ids = PromptIds(prompt);
  GenerationRun run;
  int32_t kv_len = 0;
  std::vector<float> logits;
  for (int step = 0; step <= 16; ++step) {
    BatchPlan plan;
    plan.token_ids = step == 0 ? ids : std::vector<int32_t>{run.greedy.back()};
    for (size_t i = 0; i < plan.token_ids.size(); ++i)
      plan.positions.push_back(kv_len + static_cast<int32_t>(i));
    plan.sequences.push_back({0, plan.num_tokens(), kv_len, blocks, true});
    EXPECT_TRUE(engine->Step(plan, &logits).ok());
    kv_len += plan.num_tokens();
    if (step == 0) run.logits = logits;
    if (step < 16) run.greedy.push_back(ArgMax(logits.data(), model.config.vocab_size));
  }
  return run;
}

TEST(QuantizationTest, ScalesMatchTheFixtureSchemeBitForBit) {
  auto int8 = Load(WeightFormat::kInt8, 128);
  auto int4 = Load(WeightFormat::kInt4, 32);
  for (const char* module : kModules) {
    const std::string key = std::string("model.layers.0.") + module;
    EXPECT_EQ(Module(*int8, 0, module).scales, ExpectedTensor("debug/quant_int8_scale/" + key)) << key;
    // int4 scales are [out, ceil(in/32)]; down_proj (in=176) ends with a
    // partial group of 16 columns.
    EXPECT_EQ(Module(*int4, 0, module).scales, ExpectedTensor("debug/quant_int4_scale/" + key)) << key;
  }
  EXPECT_EQ(int4->layers[0].down_proj.scales.size(), 64u * 6);
}

TEST(QuantizationTest, Int8LogitsAndGreedyMatchTheDequantizedReference) {
  auto model = Load(WeightFormat::kInt8, 128);
  const auto& expected = testing::Expected()["results"]["quant_int8"];
  float worst_vs_ref = 0, worst_vs_fp32 = 0;
  for (int p = 0; p < 6; ++p) {
    GenerationRun run = Generate(*model, p);
    const float d = MaxAbsDiff(run.logits, ExpectedTensor("quant_int8/" + std::to_string(p)));
    EXPECT_LE(d, 1e-3f) << "prompt " << p;
    EXPECT_EQ(run.greedy, expected["greedy"][p].get<std::vector<int32_t>>()) << "prompt " << p;
    worst_vs_ref = std::max(worst_vs_ref, d);
    worst_vs_fp32 =
        std::max(worst_vs_fp32, MaxAbsDiff(run.logits, ExpectedTensor("base/" + std::to_string(p))));
  }
  // Distance from the fp32 model, as recorded by the fixture (0.105): int8
  // moves logits by about a tenth and keeps every greedy token.
  RecordProperty("int8_max_abs_diff_vs_dequant_reference", std::to_string(worst_vs_ref));
  RecordProperty("int8_max_abs_diff_vs_fp32", std::to_string(worst_vs_fp32));
  EXPECT_GT(worst_vs_fp32, 0.05f);
  EXPECT_LT(worst_vs_fp32, 0.2f);
}

TEST(QuantizationTest, Int4Group32LogitsAndGreedyMatchTheDequantizedReference) {
  auto model = Load(WeightFormat::kInt4, 32);
  const auto& expected = testing::Expected()["results"]["quant_int4"];
  float worst_vs_ref = 0, worst_vs_fp32 = 0;
  for (int p = 0; p < 6; ++p) {
    GenerationRun run = Generate(*model, p);
    const float d = MaxAbsDiff(run.logits, ExpectedTensor("quant_int4/" + std::to_string(p)));
    EXPECT_LE(d, 1e-3f) << "prompt " << p;
    EXPECT_EQ(run.greedy, expected["greedy"][p].get<std::vector<int32_t>>()) << "prompt " << p;
    worst_vs_ref = std::max(worst_vs_ref, d);
    worst_vs_fp32 =
        std::max(worst_vs_fp32, MaxAbsDiff(run.logits, ExpectedTensor("base/" + std::to_string(p))));
  }
  // The fixture records 1.83 between int4 (group 32) and fp32 logits; greedy
  // diverges from fp32 on prompt 4 after five tokens.
  RecordProperty("int4_max_abs_diff_vs_dequant_reference", std::to_string(worst_vs_ref));
  RecordProperty("int4_max_abs_diff_vs_fp32", std::to_string(worst_vs_fp32));
  EXPECT_GT(worst_vs_fp32, 1.0f);
  EXPECT_LT(worst_vs_fp32, 2.5f);
}

TEST(QuantizationTest, PartialLastGroupRoundTrips) {
  // in = 20 with groups of 8: groups [0,8), [8,16), [16,20).
  std::vector<float> w(20);
  for (int i = 0; i < 20; ++i) w[i] = std::sin(1.3f * i) * (i < 16 ? 1.0f : 0.01f);
  std::vector<uint8_t> packed(10);
  std::vector<float> scales(3);
  QuantizeRowInt4(w.data(), 20, 8, packed.data(), scales.data());
  float m = 0;
  for (int i = 16; i < 20; ++i) m = std::max(m, std::fabs(w[i]));
  EXPECT_FLOAT_EQ(scales[2], m / 7.0f);  // the partial group has its own scale
  std::vector<float> back(20);
  PortableIsa().dequant_int4(packed.data(), scales.data(), 8, back.data(), 20);
  for (int i = 0; i < 20; ++i) EXPECT_LE(std::fabs(back[i] - w[i]), scales[i / 8] / 2 + 1e-7f) << i;
}

TEST(QuantizationTest, RoundsHalfToEvenAndClamps) {
  // max 7 -> scale 1: 2.5 -> 2, 3.5 -> 4, -0.5 -> 0 (half to even).
  const float w[8] = {7.0f, 2.5f, 3.5f, -0.5f, -7.0f, 0.0f, 1.5f, -2.5f};
  uint8_t packed[4];
  float scale;
  QuantizeRowInt4(w, 8, 8, packed, &scale);
  EXPECT_EQ(scale, 1.0f);
  float back[8];
  PortableIsa().dequant_int4(packed, &scale, 8, back, 8);
  EXPECT_EQ(std::vector<float>(back, back + 8), (std::vector<float>{7, 2, 4, 0, -7, 0, 2, -2}));
  int8_t q[3];
  const float w8[2] = {127.0f, -63.5f};
  QuantizeRowInt8(w8, 2, q, &scale);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], -64);  // -63.5 rounds to the even -64
  const float zeros[3] = {0, 0, 0};
  QuantizeRowInt8(zeros, 3, q, &scale);
  EXPECT_EQ(scale, 1.0f);  // a zero scale becomes 1
}

TEST(QuantizationTest, OptionsAreValidated) {
  EXPECT_TRUE(ParseQuantOptions("int4", 32).ok());
  EXPECT_EQ(ParseQuantOptions("int8", 128)->format, WeightFormat::kInt8);
  EXPECT_EQ(ParseQuantOptions("none", 128)->format, WeightFormat::kF32);
  auto bad = ParseQuantOptions("int3", 128);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("unknown --quantize value 'int3' (use int4, int8 or none)"),
            std::string::npos);
  for (int64_t g : {0, -8, 12, 1}) {
    auto s = ParseQuantOptions("int4", g);
    ASSERT_FALSE(s.ok()) << g;
    EXPECT_NE(s.status().message().find("--quant-group-size must be a positive multiple of 8"),
              std::string::npos);
  }
}

// Each vector ISA against a double-precision reference, on odd sizes.
TEST(VectorIsaTest, EveryIsaAgreesWithTheReference) {
  std::vector<const VectorIsa*> isas = {&PortableIsa()};
  if (Avx2Isa()) isas.push_back(Avx2Isa());
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 7, 8, 9, 31, 33, 64, 176, 1000}) {
    std::vector<float> a(n), b(n);
    for (int64_t i = 0; i < n; ++i) a[i] = normal(rng), b[i] = normal(rng);
    std::vector<int8_t> q8(n);
    for (int64_t i = 0; i < n; ++i) q8[i] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    const int32_t group = 8;
    std::vector<uint8_t> q4((n + 1) / 2);
    for (auto& byte : q4) byte = static_cast<uint8_t>(rng());
    std::vector<float> scales((n + group - 1) / group);
    for (auto& s : scales) s = 0.01f + std::fabs(normal(rng));
    double dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += double{a[i]} * b[i];
    for (const VectorIsa* isa : isas) {
      EXPECT_NEAR(isa->dot(a.data(), b.data(), n), dot, 1e-4 * (1 + std::sqrt(double(n))))
          << isa->name << " n=" << n;
      std::vector<float> d8(n), d4(n);
      isa->dequant_int8(q8.data(), 0.5f, d8.data(), n);
      isa->dequant_int4(q4.data(), scales.data(), group, d4.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(d8[i], q8[i] * 0.5f) << isa->name;
        const int nib = (i & 1) ? (q4[i / 2] >> 4) : (q4[i / 2] & 15);
        ASSERT_EQ(d4[i], static_cast<float>(nib >= 8 ? nib - 16 : nib) * scales[i / group])
            << isa->name << " i=" << i;
      }
    }
  }
}

TEST(VectorIsaTest, FusedQuantizedDotsMatchTheReferenceAndIgnoreBatching) {
  std::vector<const VectorIsa*> isas = {&PortableIsa()};
  if (Avx2Isa()) isas.push_back(Avx2Isa());
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (int64_t n : {8, 9, 24, 40, 176, 1000}) {
    const int32_t group = 16;
    std::vector<float> x(kMaxDotRows * n);
    for (auto& v : x) v = normal(rng);
    std::vector<int8_t> q8(n);
    for (auto& v : q8) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    std::vector<uint8_t> q4((n + 1) / 2);
    for (auto& byte : q4) byte = static_cast<uint8_t>(rng());
    std::vector<float> scales((n + group - 1) / group);
    for (auto& v : scales) v = 0.01f + std::fabs(normal(rng));
    std::vector<float> w8(n), w4(n);
    PortableIsa().dequant_int8(q8.data(), 0.25f, w8.data(), n);
    PortableIsa().dequant_int4(q4.data(), scales.data(), group, w4.data(), n);
    for (const VectorIsa* isa : isas) {
      float all8[kMaxDotRows], all4[kMaxDotRows];
      isa->dot_int8_rows(x.data(), n, kMaxDotRows, q8.data(), 0.25f, n, all8);
      isa->dot_int4_rows(x.data(), n, kMaxDotRows, q4.data(), scales.data(), group, n, all4);
      for (int r = 0; r < kMaxDotRows; ++r) {
        double ref8 = 0, ref4 = 0;
        for (int64_t i = 0; i < n; ++i) {
          ref8 += double{x[r * n + i]} * w8[i];
          ref4 += double{x[r * n + i]} * w4[i];
        }
        EXPECT_NEAR(all8[r], ref8, 1e-4 * (1 + std::fabs(ref8)) * std::sqrt(double(n)))
            << isa->name << " n=" << n;
        EXPECT_NEAR(all4[r], ref4, 1e-4 * (1 + std::fabs(ref4)) * std::sqrt(double(n)))
            << isa->name << " n=" << n;
        // The same row computed alone: bit-identical.
        float one8, one4;
        isa->dot_int8_rows(x.data() + r * n, n, 1, q8.data(), 0.25f, n, &one8);
        isa->dot_int4_rows(x.data() + r * n, n, 1, q4.data(), scales.data(), group, n, &one4);
        EXPECT_EQ(one8, all8[r]) << isa->name << " n=" << n << " row " << r;
        EXPECT_EQ(one4, all4[r]) << isa->name << " n=" << n << " row " << r;
      }
    }
  }
}

TEST(LinearKernelTest, QuantizedLinearMatchesDequantizedReference) {
  ThreadPool pool(2);
  ExecContext ctx;
  ctx.pool = &pool;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (int64_t in : {8, 24, 40, 176}) {
    for (int64_t rows : {1, 3, 6}) {
      const int64_t out = 13;
      std::vector<float> x(rows * in), w(out * in);
      for (auto& v : x) v = normal(rng);
      for (auto& v : w) v = normal(rng);
      for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
        const int32_t group = 16;
        const int64_t groups = (in + group - 1) / group;
        std::vector<uint8_t> q(f == WeightFormat::kInt8 ? out * in : out * ((in + 1) / 2));
        std::vector<float> scales(f == WeightFormat::kInt8 ? out : out * groups);
        std::vector<float> deq(out * in);
        for (int64_t o = 0; o < out; ++o) {
          if (f == WeightFormat::kInt8) {
            QuantizeRowInt8(&w[o * in], in, reinterpret_cast<int8_t*>(&q[o * in]), &scales[o]);
            PortableIsa().dequant_int8(reinterpret_cast<int8_t*>(&q[o * in]), scales[o], &deq[o * in], in);
          } else {
            QuantizeRowInt4(&w[o * in], in, group, &q[o * ((in + 1) / 2)], &scales[o * groups]);
            PortableIsa().dequant_int4(&q[o * ((in + 1) / 2)], &scales[o * groups], group, &deq[o * in], in);
          }
        }
        std::vector<float> y(rows * out), bias(out, 0.25f);
        LinearArgs a{x.data(), DType::kF32, f, q.data(), scales.data(), group, bias.data(), y.data(), rows, in, out};
        ASSERT_TRUE(LinearCpu(a, ctx).ok());
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = 0; o < out; ++o) {
            double ref = 0.25;
            for (int64_t i = 0; i < in; ++i) ref += double{x[r * in + i]} * deq[o * in + i];
            EXPECT_NEAR(y[r * out + o], ref, 1e-4 * (1 + std::fabs(ref)))
                << WeightFormatName(f) << " in=" << in;
          }
        }
      }
    }
  }
  std::vector<float> x(8), y(1);
  std::vector<uint8_t> q(4);
  std::vector<float> s(1);
  LinearArgs bad{x.data(), DType::kF32, WeightFormat::kInt4, q.data(), s.data(), 12, nullptr, y.data(), 1, 8, 1};
  EXPECT_EQ(LinearCpu(bad, ctx).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
