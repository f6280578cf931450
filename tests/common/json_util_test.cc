#include "common/json_util.h"

#include <string>

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(JsonUtilTest, DepthIgnoresBracketsInsideStrings) {
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": "[[[{{{\"]]]"}]})", 100), 3);
  EXPECT_EQ(JsonNestingDepth("[]", 100), 1);
  EXPECT_EQ(JsonNestingDepth("1", 100), 0);
  // Stops scanning once past the limit.
  EXPECT_EQ(JsonNestingDepth(std::string(1000000, '['), 64), 65);
}

TEST(JsonUtilTest, RefusesDeepAndLargeDocumentsBeforeParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto j = ParseJson(deep, "adapter_config.json", 1 << 20);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(j.status().message(), "adapter_config.json nests arrays or objects more than 64 levels deep");
  EXPECT_TRUE(ParseJson(std::string(64, '[') + std::string(64, ']'), "x", 1000).ok());
  EXPECT_FALSE(ParseJson(std::string(65, '[') + std::string(65, ']'), "x", 1000).ok());
  auto big = ParseJson("\"" + std::string(2000, 'a') + "\"", "x", 1000);
  EXPECT_EQ(big.status().message(), "x is 2002 bytes, over the limit of 1000 bytes");
}

TEST(JsonUtilTest, SyntaxErrorsQuoteOnlyAShortExcerpt) {
  const std::string bad = "{\"a\": " + std::string(100000, 'x') + "}";
  auto j = ParseJson(bad, "f.json", 1 << 20);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("f.json: not valid JSON (near byte"), std::string::npos) << j.status();
  EXPECT_LT(j.status().message().size(), 200u);
}

TEST(JsonUtilTest, ExcerptCutsAtACodePointBoundary) {
  EXPECT_EQ(Excerpt("short"), "short");
  const std::string s = std::string(63, 'a') + "\xC3\xA9" + std::string(10, 'b');  // é straddles byte 64
  EXPECT_EQ(Excerpt(s), std::string(63, 'a') + "... (75 bytes)");
  EXPECT_EQ(JsonExcerpt(nlohmann::json::array({1, 2})), "[1,2]");
}

}  // namespace
}  // namespace tessera
