// Parity with HF tokenizers itself: for every tokenizer under
// tests/fixtures/tokenizers/ (real files, and variants of them with other
// pipeline stages), the ids of every corpus string (with and without special
// tokens) and the decodes equal what the official `tokenizers` package
// produced (tools/tokenizer-parity/generate.js), with transformers' rule for
// add_bos_token applied as generate.js documents.
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

class TokenizerParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParityTest, IdsAndDecodesEqualHfTokenizers) {
  const std::string dir = std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/" + GetParam();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = testing::LoadTokenizerFixture(GetParam());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const nlohmann::json expected = nlohmann::json::parse(testing::ReadFileOrDie(dir + "/expected.json"));
  const auto& cases = expected.at("cases");
  ASSERT_GE(cases.size(), 200u);
  int ids_equal = 0, plain_equal = 0, decode_equal = 0, skip_equal = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    auto ids = (*tok)->Encode(text, /*add_special=*/true);
    auto plain = (*tok)->Encode(text, /*add_special=*/false);
    ASSERT_TRUE(ids.ok() && plain.ok()) << text;
    const std::vector<int32_t> want = c.at("ids"), want_plain = c.at("ids_plain");
    ids_equal += *ids == want;
    plain_equal += *plain == want_plain;
    EXPECT_EQ(*ids, want) << "'" << text << "'";
    EXPECT_EQ(*plain, want_plain) << "'" << text << "'";
    const std::string decoded = (*tok)->Decode(want_plain, /*skip_special=*/false);
    const std::string decoded_skip = (*tok)->Decode(want, /*skip_special=*/true);
    decode_equal += decoded == c.at("decoded").get<std::string>();
    skip_equal += decoded_skip == c.at("decoded_skip_special").get<std::string>();
    EXPECT_EQ(decoded, c.at("decoded").get<std::string>()) << "'" << text << "'";
    EXPECT_EQ(decoded_skip, c.at("decoded_skip_special").get<std::string>()) << "'" << text << "'";
  }
  std::printf("%s: %zu strings; ids %d, ids without special tokens %d, decode %d, decode skipping special %d\n",
              GetParam().c_str(), cases.size(), ids_equal, plain_equal, decode_equal, skip_equal);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerParityTest, ::testing::ValuesIn(testing::TokenizerFixtureNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tessera
