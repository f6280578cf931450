#include <filesystem>

#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string LoadError(const std::string& dir) {
  auto m = LoadModel(dir);
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : std::string(m.status().message());
}

void EditConfig(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(dir + "/config.json"));
  edit(j);
  testing::WriteFileOrDie(dir + "/config.json", j.dump(2));
}

TEST(ModelLoaderTest, LoadsFixtureConfig) {
  auto m = LoadModel(testing::TinyLlamaModelDir());
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = (*m)->config;
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position_embeddings, 256);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ((*m)->name, "model");
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{1});
}

TEST(ModelLoaderTest, MissingFolder) {
  const std::string msg = LoadError("/nonexistent/model-dir");
  EXPECT_NE(msg.find("/nonexistent/model-dir"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, MissingConfigAndWeights) {
  TempDir dir;
  std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  testing::WriteFileOrDie(dir.Join("config.json"),
                          testing::ReadFileOrDie(testing::TinyLlamaModelDir() + "/config.json"));
  msg = LoadError(dir.path());
  EXPECT_NE(msg.find("no *.safetensors"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, TruncatedWeights) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  const std::string w = testing::ReadFileOrDie(dir.Join("model.safetensors"));
  testing::WriteFileOrDie(dir.Join("model.safetensors"), w.substr(0, w.size() - 1000));
  const std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, ShapeDisagreesWithConfig) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  EditConfig(dir.path(), [](nlohmann::json& j) { j["intermediate_size"] = 128; });
  const std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[176, 64]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[128, 64]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, UnsupportedArchitectureAndActivation) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  EditConfig(dir.path(), [](nlohmann::json& j) { j["architectures"] = {"GPT2LMHeadModel"}; });
  std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("GPT2LMHeadModel"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  EditConfig(dir.path(), [](nlohmann::json& j) {
    j["architectures"] = {"LlamaForCausalLM"};
    j["hidden_act"] = "gelu";
  });
  msg = LoadError(dir.path());
  EXPECT_NE(msg.find("gelu"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, MistralAndQwen2AreAccepted) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  EditConfig(dir.path(), [](nlohmann::json& j) {
    j["architectures"] = {"MistralForCausalLM"};
    j["sliding_window"] = 128;
  });
  auto m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->config.max_position_embeddings, 128);  // capped at the window

  // Qwen2 has q/k/v biases: without them in the checkpoint the error names one.
  EditConfig(dir.path(), [](nlohmann::json& j) { j["architectures"] = {"Qwen2ForCausalLM"}; });
  const std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("model.layers.0.self_attn.q_proj.bias"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, UnknownDtypeNamesTheFile) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  std::vector<TensorToWrite> ts = {{"model.embed_tokens.weight", DType::kF32, {1}, std::vector<uint8_t>(4)}};
  ASSERT_TRUE(WriteSafetensors(dir.Join("model.safetensors"), ts).ok());
  std::string raw = testing::ReadFileOrDie(dir.Join("model.safetensors"));
  const size_t at = raw.find("\"F32\"");
  ASSERT_NE(at, std::string::npos);
  raw.replace(at, 5, "\"F64\"");
  testing::WriteFileOrDie(dir.Join("model.safetensors"), raw);
  const std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported dtype 'F64'"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, ShardedCheckpointLoadsTheSameWeights) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  fs::remove(dir.Join("model.safetensors"));
  auto src = SafetensorsFile::Open(testing::TinyLlamaModelDir() + "/model.safetensors");
  ASSERT_TRUE(src.ok());
  std::vector<TensorToWrite> shard[2];
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  int i = 0;
  for (const auto& [name, view] : (*src)->tensors()) {
    const int s = (i++) % 2;
    shard[s].push_back(
        {name, view.dtype, view.shape, std::vector<uint8_t>(view.data, view.data + view.nbytes)});
    index["weight_map"][name] =
        s == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  ASSERT_TRUE(WriteSafetensors(dir.Join("model-00001-of-00002.safetensors"), shard[0]).ok());
  ASSERT_TRUE(WriteSafetensors(dir.Join("model-00002-of-00002.safetensors"), shard[1]).ok());
  testing::WriteFileOrDie(dir.Join("model.safetensors.index.json"), index.dump());

  auto sharded = LoadModel(dir.path());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  auto single = LoadModel(testing::TinyLlamaModelDir());
  ASSERT_TRUE(single.ok());
  EXPECT_EQ((*sharded)->embed_tokens, (*single)->embed_tokens);
  EXPECT_EQ((*sharded)->layers[1].down_proj.weight, (*single)->layers[1].down_proj.weight);
  EXPECT_EQ((*sharded)->lm_head, (*single)->lm_head);

  // An index naming a shard that is missing fails with the shard's name.
  fs::remove(dir.Join("model-00002-of-00002.safetensors"));
  const std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("model-00002-of-00002.safetensors"), std::string::npos) << msg;
}

TEST(ModelLoaderTest, TiedEmbeddingsUseTheEmbeddingTable) {
  TempDir dir;
  testing::CopyModelTo(dir.path());
  EditConfig(dir.path(), [](nlohmann::json& j) { j["tie_word_embeddings"] = true; });
  auto m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->lm_head.empty());
  EXPECT_EQ((*m)->lm_head_weight(), (*m)->embed_tokens.data());
}

TEST(RopeScalingTest, LinearDividesFrequencies) {
  auto c = ModelConfig::FromJsonText(R"({"architectures":["LlamaForCausalLM"],"vocab_size":8,
    "hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,
    "max_position_embeddings":64,"rope_theta":10000.0,"rope_scaling":{"type":"linear","factor":4.0}})",
                                     "cfg");
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<float> inv = ComputeRopeInvFreq(*c);
  ASSERT_EQ(inv.size(), 8u);
  EXPECT_FLOAT_EQ(inv[0], 0.25f);
  EXPECT_FLOAT_EQ(inv[4], 0.01f / 4);
}

TEST(RopeScalingTest, Llama3PiecewiseFrequencies) {
  // head_dim 16, theta 1e4, factor 8, low 1, high 4, original context 64:
  // wavelengths 6.3 (kept), 19.9 and 62.8 (smoothed), the rest divided by 8.
  auto c = ModelConfig::FromJsonText(R"({"architectures":["LlamaForCausalLM"],"vocab_size":8,
    "hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,
    "max_position_embeddings":64,"rope_parameters":{"rope_type":"llama3","rope_theta":10000.0,
    "factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}})",
                                     "cfg");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<float> expected = {1,        0.244384599f,    0.013042256f, 0.00395284708f,
                                       0.00125f, 0.000395284708f, 0.000125f,    3.95284708e-05f};
  std::vector<float> inv = ComputeRopeInvFreq(*c);
  ASSERT_EQ(inv.size(), expected.size());
  for (size_t i = 0; i < inv.size(); ++i) EXPECT_NEAR(inv[i], expected[i], expected[i] * 1e-6) << i;
}

TEST(RopeScalingTest, UnknownTypeIsRefused) {
  auto c = ModelConfig::FromJsonText(R"({"architectures":["LlamaForCausalLM"],"vocab_size":8,
    "hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,
    "max_position_embeddings":64,"rope_scaling":{"type":"yarn","factor":4.0}})",
                                     "cfg.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("yarn"), std::string::npos);
  EXPECT_NE(c.status().message().find("cfg.json"), std::string::npos);
}

}  // namespace
}  // namespace tessera
