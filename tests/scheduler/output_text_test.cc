#include "server/scheduler/output_text.h"

#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  OutputText out(tok, {});
  std::string text;
  for (int32_t id : ids) text += out.Append(id);
  return text + out.Flush();
}

TEST(OutputTextTest, SentencePieceStreamsDropTheFirstSpaceAsHfDecodeDoes) {
  auto tok = Tokenizer::FromDir(std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/llama2");
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_EQ((*tok)->strip_leading_spaces(), 1);
  for (const std::string text : {"Hello world", "  two leading", "Tiếng Việt có dấu", "emoji🙂inside\n"}) {
    auto ids = (*tok)->Encode(text, /*add_special=*/true);  // with BOS: skipped when streamed
    ASSERT_TRUE(ids.ok());
    const std::string streamed = Stream(**tok, *ids);
    EXPECT_EQ(streamed, (*tok)->Decode(*ids, /*skip_special=*/true)) << text;
    EXPECT_EQ(streamed, text) << text;
  }
}

TEST(OutputTextTest, ByteLevelStreamsKeepEveryByte) {
  auto tok = Tokenizer::FromDir(testing::TinyLlamaModelDir());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->strip_leading_spaces(), 0);
  auto ids = (*tok)->Encode(" Once upon a time", /*add_special=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(Stream(**tok, *ids), " Once upon a time");
}

// A BPEDecoder's suffix becomes a space only once another token follows: a
// stream holds it back, and an end-of-sequence token does not release it.
TEST(OutputTextTest, EndOfWordSuffixSpaceWaitsForTheNextToken) {
  auto tok = testing::LoadTokenizerFixture("bpe_end_of_word_suffix");
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_TRUE((*tok)->decodes_last_differently());
  auto ids = (*tok)->Encode("one two", /*add_special=*/true);  // <s> ... </s>
  ASSERT_TRUE(ids.ok());
  OutputText out(**tok, {});
  std::string text;
  for (int32_t id : *ids) {
    text += out.Append(id);
    EXPECT_FALSE(text.ends_with(" ")) << text;
  }
  EXPECT_EQ(text + out.Flush(), "one two");
}

// Streaming the ids of every parity string (special tokens skipped) gives
// HF's decode of them, for every fixture tokenizer (Metaspace decoders drop
// the first token's replacement; Strip decoders the first space).
TEST(OutputTextTest, StreamsEqualHfDecodeForEveryFixtureTokenizer) {
  for (const std::string& name : testing::TokenizerFixtureNames()) {
    auto tok = testing::LoadTokenizerFixture(name);
    ASSERT_TRUE(tok.ok()) << name << ": " << tok.status();
    const nlohmann::json expected = nlohmann::json::parse(
        testing::ReadFileOrDie(std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/" + name + "/expected.json"));
    int equal = 0;
    for (const auto& c : expected.at("cases")) {
      const std::vector<int32_t> ids = c.at("ids");
      const std::string streamed = Stream(**tok, ids);
      equal += streamed == c.at("decoded_skip_special").get<std::string>();
      EXPECT_EQ(streamed, c.at("decoded_skip_special").get<std::string>()) << name << ": " << c.at("text");
    }
    EXPECT_EQ(equal, static_cast<int>(expected.at("cases").size())) << name;
  }
}

}  // namespace
}  // namespace tessera
