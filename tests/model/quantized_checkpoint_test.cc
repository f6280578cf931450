#include "model/quantized_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "gtest/gtest.h"
#include "server/engine/engine.h"
#include "model/model.h"
#include "tests/support/fixtures.h"
#include "tests/support/kv_pages.h"

namespace tessera {
namespace {

using testing::TempDir;

std::unique_ptr<Model> Load(const std::string& dir, WeightFormat f, int32_t group) {
  LoadOptions o;
  o.quant = {f, group};
  auto m = LoadModel(dir, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

std::vector<float> PromptLogits(const Model& model, int prompt) {
  EngineOptions eo;
  eo.kv_cache_tokens = 64;
  auto engine = *Engine::Create(model, eo);
  std::vector<int32_t> ids = testing::PromptIds(prompt);
  BatchPlan plan;
  plan.token_ids = ids;
  for (size_t i = 0; i < ids.size(); ++i) plan.positions.push_back(static_cast<int32_t>(i));
  testing::KvPages pages(*engine);
  plan.sequences.push_back({0, plan.num_tokens(), 0, *pages.Take(4 * 16), true});
  std::vector<float> logits;
  EXPECT_TRUE(engine->Step(plan, &logits).ok());
  return logits;
}

std::string WriteQuantized(const TempDir& dir, WeightFormat f, int32_t group) {
  auto model = Load(testing::TinyLlamaModelDir(), f, group);
  const std::string out = dir.Join("q");
  absl::Status s = WriteQuantizedCheckpoint(*model, out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(QuantizedCheckpointTest, RoundTripIsBitExact) {
  for (auto [f, group] : {std::pair{WeightFormat::kInt4, 32}, std::pair{WeightFormat::kInt8, 128}}) {
    TempDir dir;
    const std::string out = WriteQuantized(dir, f, group);
    EXPECT_FALSE(std::filesystem::exists(out + ".partial"));
    auto marker = ReadQuantizedMarker(out);
    ASSERT_TRUE(marker.ok() && marker->has_value());
    EXPECT_EQ((*marker)->quant.format, f);
    auto at_load = Load(testing::TinyLlamaModelDir(), f, group);
    auto pre = Load(out, f, group);
    ASSERT_TRUE(pre);
    EXPECT_TRUE(pre->prequantized);
    EXPECT_EQ(pre->layers[1].down_proj.qweight, at_load->layers[1].down_proj.qweight);
    EXPECT_EQ(pre->layers[1].down_proj.scales, at_load->layers[1].down_proj.scales);
    EXPECT_EQ(pre->lm_head, at_load->lm_head);
    for (int p : {0, 5}) EXPECT_EQ(PromptLogits(*pre, p), PromptLogits(*at_load, p)) << WeightFormatName(f);
    // And it still matches HF's dequantized reference.
    if (f == WeightFormat::kInt4) {
      EXPECT_LE(testing::MaxAbsDiff(PromptLogits(*pre, 2), testing::ExpectedTensor("quant_int4/2")), 1e-3f);
    }
  }
}

TEST(QuantizedCheckpointTest, SchemeMismatchIsAClearError) {
  TempDir dir;
  const std::string out = WriteQuantized(dir, WeightFormat::kInt4, 32);
  LoadOptions o;
  o.quant = {WeightFormat::kInt4, 128};
  auto m = LoadModel(out, o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(
      m.status().message().find("pre-quantized as int4 (group 32) but int4 (group 128) was asked for; pass "
                                "--quantize int4 --quant-group-size 32"),
      std::string::npos)
      << m.status();
}

TEST(QuantizedCheckpointTest, WriterRefusesExistingFolderAndUnquantizedModels) {
  TempDir dir;
  auto fp32 = Load(testing::TinyLlamaModelDir(), WeightFormat::kF32, 128);
  EXPECT_EQ(WriteQuantizedCheckpoint(*fp32, dir.Join("x")).code(), absl::StatusCode::kInvalidArgument);
  auto q = Load(testing::TinyLlamaModelDir(), WeightFormat::kInt8, 128);
  EXPECT_EQ(WriteQuantizedCheckpoint(*q, dir.path()).code(), absl::StatusCode::kAlreadyExists);
}

std::string LoadError(const std::string& dir) {
  LoadOptions o;
  o.quant = {WeightFormat::kInt4, 32};
  auto m = LoadModel(dir, o);
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : std::string(m.status().message());
}

TEST(QuantizedCheckpointTest, CorruptFilesGiveClearErrors) {
  TempDir dir;
  const std::string out = WriteQuantized(dir, WeightFormat::kInt4, 32);
  const std::string weights = out + "/model.safetensors";
  const std::string good = testing::ReadFileOrDie(weights);

  // Truncated.
  testing::WriteFileOrDie(weights, good.substr(0, good.size() - 100));
  std::string msg = LoadError(out);
  EXPECT_NE(msg.find(weights), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end of the data"), std::string::npos) << msg;

  // qweight with the wrong dtype.
  std::string bad = good;
  const size_t at = bad.find("\"U8\"");
  ASSERT_NE(at, std::string::npos);
  bad.replace(at, 4, "\"I8\"");
  testing::WriteFileOrDie(weights, bad);
  msg = LoadError(out);
  EXPECT_NE(msg.find("has dtype I8; expected U8"), std::string::npos) << msg;

  // A NaN scale.
  testing::WriteFileOrDie(weights, good);
  {
    uint64_t header_len = 0;
    std::memcpy(&header_len, good.data(), 8);  // little-endian host
    const nlohmann::json header = nlohmann::json::parse(good.substr(8, header_len));
    const uint64_t begin = header["model.layers.0.self_attn.q_proj.scales"]["data_offsets"][0];
    bad = good;
    const uint32_t nan_bits = 0x7fc00000;
    std::memcpy(bad.data() + 8 + header_len + begin, &nan_bits, 4);
  }
  testing::WriteFileOrDie(weights, bad);
  msg = LoadError(out);
  EXPECT_NE(msg.find("model.layers.0.self_attn.q_proj.scales"), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;

  // Broken marker, unknown version.
  testing::WriteFileOrDie(weights, good);
  const std::string marker = out + "/" + kQuantizedMarkerFile;
  const std::string good_marker = testing::ReadFileOrDie(marker);
  testing::WriteFileOrDie(marker, "{\"format\": \"tessera-quantized\"");
  msg = LoadError(out);
  EXPECT_NE(msg.find(marker), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  nlohmann::json j = nlohmann::json::parse(good_marker);
  j["format_version"] = 2;
  testing::WriteFileOrDie(marker, j.dump());
  msg = LoadError(out);
  EXPECT_NE(msg.find("unsupported format_version"), std::string::npos) << msg;

  // A plain HF checkpoint mislabelled as pre-quantized: the tensors are missing.
  testing::CopyModelTo(out);
  testing::WriteFileOrDie(marker, good_marker);
  msg = LoadError(out);
  EXPECT_NE(msg.find("qweight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

}  // namespace
}  // namespace tessera
