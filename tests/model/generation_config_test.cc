#include "model/generation_config.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(GenerationConfigTest, HfRulesForDefaults) {
  auto d = ParseGenerationDefaults(R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9})", "g");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FLOAT_EQ(d->temperature, 0.6f);
  EXPECT_FLOAT_EQ(d->top_p, 0.9f);
  EXPECT_EQ(d->top_k, 50);  // HF's default when do_sample is on
  EXPECT_EQ(d->source, "generation_config.json");

  // Without do_sample, HF decodes greedily whatever the temperature says.
  d = ParseGenerationDefaults(R"({"temperature": 0.6, "eos_token_id": 2})", "g");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->temperature, 0.0f);
  EXPECT_EQ(d->source, "generation_config.json (do_sample false)");

  d = ParseGenerationDefaults(R"({"do_sample": true})", "g");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->temperature, 1.0f);
  EXPECT_EQ(d->top_k, 50);
  EXPECT_EQ(d->top_p, 1.0f);
}

TEST(GenerationConfigTest, RefusesValuesOutOfRangeNamingTheKey) {
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {R"({"do_sample": true, "temperature": -1})", "'temperature'"},
           {R"({"do_sample": true, "top_p": 0})", "'top_p'"},
           {R"({"do_sample": true, "top_p": 1.5})", "'top_p'"},
           {R"({"do_sample": true, "top_k": -3})", "'top_k'"},
           {R"({"do_sample": "yes"})", "'do_sample'"},
           {R"([1, 2])", "not a JSON object"},
           {R"({"do_sample": )", "not valid JSON"}}) {
    auto d = ParseGenerationDefaults(text, "generation_config.json");
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find(key), std::string::npos) << d.status();
  }
}

TEST(GenerationConfigTest, NoFileMeansGreedy) {
  auto d = ReadGenerationDefaults("/nonexistent-model-dir");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->temperature, 0.0f);
  EXPECT_EQ(d->source, "built-in (greedy)");
}

}  // namespace
}  // namespace tessera
