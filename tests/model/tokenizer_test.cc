#include "model/tokenizer.h"

#include <random>

#include "gtest/gtest.h"
#include "model/utf8.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = Tokenizer::FromDir(testing::TinyLlamaModelDir());
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = t->release();
  }
  static void TearDownTestSuite() { delete tok_; }
  static Tokenizer* tok_;
};
Tokenizer* TokenizerTest::tok_ = nullptr;

TEST_F(TokenizerTest, FixturePromptsEncodeToRecordedIds) {
  const auto& prompts = testing::Expected()["prompts"];
  ASSERT_EQ(prompts.size(), 6u);
  for (const auto& p : prompts) {
    auto ids = tok_->Encode(p["text"].get<std::string>());
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, p["ids"].get<std::vector<int32_t>>()) << p["text"];
  }
}

TEST_F(TokenizerTest, LongFixturePromptEncodes) {
  const auto& t = testing::Expected()["position_tests"]["long"];
  auto ids = tok_->Encode(t["text"].get<std::string>());
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, t["ids"].get<std::vector<int32_t>>());
}

// One 400k-letter word is one pre-token: BPE over it must be O(n log n) (the
// old quadratic merge loop took minutes here) and still round-trip.
TEST_F(TokenizerTest, VeryLongWordEncodesAndRoundTrips) {
  std::string word;
  while (word.size() < 400000) word += "onceuponatimethereweresmallrobots";
  auto ids = tok_->Encode(word, /*add_special=*/false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_LT(ids->size(), word.size());
  EXPECT_EQ(tok_->Decode(*ids, true), word);
  EXPECT_GE(tok_->max_token_bytes(), 2u);
}

TEST_F(TokenizerTest, SpecialTokensAndConfig) {
  EXPECT_EQ(tok_->vocab_size(), 512);
  EXPECT_EQ(tok_->bos_id(), 0);
  EXPECT_EQ(tok_->eos_id(), 1);
  EXPECT_FALSE(tok_->add_bos());  // tokenizer_config.json: add_bos_token=false
  EXPECT_TRUE(tok_->IsSpecial(1));
  EXPECT_FALSE(tok_->IsSpecial(300));
  // Added tokens written in the text are split out whole.
  auto ids = tok_->Encode("The end.</s>The");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{471, 305, 282, 17, 1, 471}));
  EXPECT_EQ(tok_->Decode(*ids, /*skip_special=*/false), "The end.</s>The");
  EXPECT_EQ(tok_->Decode(*ids, /*skip_special=*/true), "The end.The");
}

TEST_F(TokenizerTest, DecodeMatchesFixtureGreedyText) {
  // HF decoded the greedy ids with errors="replace" and special tokens kept.
  for (const char* variant : {"base", "lora", "road", "quant_int4"}) {
    const auto& r = testing::Expected()["results"][variant];
    for (size_t p = 0; p < r["greedy"].size(); ++p) {
      std::vector<int32_t> ids = r["greedy"][p].get<std::vector<int32_t>>();
      EXPECT_EQ(tok_->Decode(ids, false), r["greedy_text"][p].get<std::string>())
          << variant << " prompt " << p;
    }
  }
}

std::string RandomUtf8(std::mt19937& rng, int chars) {
  // Mix of ASCII, Latin-1, CJK, emoji, whitespace and punctuation.
  static const char32_t kRanges[][2] = {{0x20, 0x7E},     {0x0A, 0x0A},       {0xC0, 0x17F},
                                        {0x4E00, 0x9FFF}, {0x1F300, 0x1F64F}, {0x3000, 0x303F},
                                        {0x0400, 0x04FF}, {0x09, 0x09}};
  std::string s;
  for (int i = 0; i < chars; ++i) {
    const auto& r = kRanges[rng() % std::size(kRanges)];
    AppendUtf8(r[0] + rng() % (r[1] - r[0] + 1), &s);
  }
  return s;
}

TEST_F(TokenizerTest, RoundTripsRandomUtf8) {
  std::mt19937 rng(42);
  for (int i = 0; i < 300; ++i) {
    const std::string s = RandomUtf8(rng, 1 + rng() % 40);
    auto ids = tok_->Encode(s, /*add_special=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_EQ(tok_->Decode(*ids, false), s) << "case " << i;
  }
  for (const char* s :
       {"", " ", "  \n\t ", "東京🙂👍🏽 café", "a\u00e9\u0301", "\xF0\x9F\x98\x80x"}) {
    auto ids = tok_->Encode(s, false);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(tok_->Decode(*ids, false), s);
  }
}

TEST_F(TokenizerTest, InvalidUtf8InputIsRejected) {
  auto ids = tok_->Encode("abc\xC3");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TokenizerTest, StreamingDecodeNeverEmitsBrokenUtf8) {
  // Token-by-token streaming of multi-byte text gives valid pieces whose
  // concatenation is the whole decode.
  const std::string text = "Naïve café: “hi” 🙂 東京!";
  auto ids = tok_->Encode(text);
  ASSERT_TRUE(ids.ok());
  Utf8StreamDecoder dec;
  std::string streamed;
  for (int32_t id : *ids) {
    std::string piece = dec.Push(tok_->TokenBytes(id, false));
    EXPECT_TRUE(IsValidUtf8(piece));
    streamed += piece;
  }
  streamed += dec.Finish();
  EXPECT_EQ(streamed, text);
  // Greedy outputs with invalid byte sequences stream to the same text as the
  // whole-buffer decode.
  for (const auto& g : testing::Expected()["results"]["base"]["greedy"]) {
    std::vector<int32_t> gids = g.get<std::vector<int32_t>>();
    Utf8StreamDecoder d;
    std::string s;
    for (int32_t id : gids) {
      std::string piece = d.Push(tok_->TokenBytes(id, false));
      EXPECT_TRUE(IsValidUtf8(piece));
      s += piece;
    }
    s += d.Finish();
    EXPECT_EQ(s, tok_->Decode(gids, false));
  }
}

TEST(Utf8Test, ReplacementFollowsMaximalSubparts) {
  // Python: b"a\xe6\x9d".decode(errors="replace") == "a\ufffd"
  EXPECT_EQ(Utf8Sanitize("a\xE6\x9D"), "a\xEF\xBF\xBD");
  // b"\xe6\x9dz" -> "\ufffdz"; b"\xff\x80" -> two replacements
  EXPECT_EQ(Utf8Sanitize("\xE6\x9Dz"), "\xEF\xBF\xBDz");
  EXPECT_EQ(Utf8Sanitize("\xFF\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Surrogates encoded in UTF-8 (ED A0 80) are ill-formed: 3 replacements.
  EXPECT_EQ(Utf8Sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  Utf8StreamDecoder d;
  EXPECT_EQ(d.Push("\xF0\x9F"), "");
  EXPECT_EQ(d.Push("\x99"), "");
  EXPECT_EQ(d.Push("\x82!"), "\xF0\x9F\x99\x82!");
  EXPECT_EQ(d.Push("\xE6"), "");
  EXPECT_EQ(d.Finish(), "\xEF\xBF\xBD");
}

TEST(TokenizerConfigTest, RefusesUnsupportedPipelinesClearly) {
  const std::string base = testing::ReadFileOrDie(testing::TinyLlamaModelDir() + "/tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(base);
  j["model"]["type"] = "WordPiece";
  auto t = Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("x/tokenizer.json"), std::string::npos);
  EXPECT_NE(t.status().message().find("WordPiece"), std::string::npos);

  j = nlohmann::json::parse(base);
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  t = Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("pre-tokenizer 'BertPreTokenizer' is not supported"), std::string::npos)
      << t.status();
}

TEST(TokenizerConfigTest, Llama3StyleSplitSequenceAndBos) {
  // Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)] with string
  // merges and add_bos_token: the shape of Llama-3 tokenizers.
  const std::string base = testing::ReadFileOrDie(testing::TinyLlamaModelDir() + "/tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(base);
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"])
    merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = merges;
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern",
          {{"Regex", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  auto t = Tokenizer::FromJson(
      j.dump(), R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "add_bos_token": true})", "llama3");
  ASSERT_TRUE(t.ok()) << t.status();
  for (const auto& p : testing::Expected()["prompts"]) {
    auto ids = (*t)->Encode(p["text"].get<std::string>());
    ASSERT_TRUE(ids.ok());
    std::vector<int32_t> expected = {0};
    for (int32_t id : p["ids"]) expected.push_back(id);
    EXPECT_EQ(*ids, expected);
  }
}

// A SentencePiece-style tokenizer written out: the vocabulary and merges
// given, a space-to-"▁" normalizer, `pre` as the pre-tokenizer.
std::string SmallTokenizer(const nlohmann::json& vocab, const nlohmann::json& merges,
                           const nlohmann::json& pre = nullptr, const nlohmann::json& post = nullptr) {
  nlohmann::json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", false}};
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
  j["pre_tokenizer"] = pre;
  j["post_processor"] = post;
  j["decoder"] = {{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}};
  j["added_tokens"] = nlohmann::json::array();
  return j.dump();
}

TEST(TokenizerConfigTest, AVocabularyTokenThatNoMergeReachesIsNotProduced) {
  // Gemma's "<s>" is in its vocabulary, but no merge builds it: HF splits it.
  auto t = Tokenizer::FromJson(SmallTokenizer({{"<", 0}, {"s", 1}, {">", 2}, {"<s>", 3}}, nlohmann::json::array()),
                               "", "gemma-like");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("<s>", false), (std::vector<int32_t>{0, 1, 2}));
}

TEST(TokenizerConfigTest, SplitBehavioursFollowHf) {
  const nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"-", 3}, {"-b", 4}, {"-c", 5}, {"a-", 6}, {"--", 7}};
  const nlohmann::json merges = {"- b", "- c", "a -", "- -"};
  // "a-b--c" split on "-": HF's pieces for each behaviour, then BPE inside each.
  const std::pair<const char*, std::vector<int32_t>> cases[] = {
      {"Isolated", {0, 3, 1, 3, 3, 2}},            // a - b - - c
      {"Removed", {0, 1, 2}},                      // a b c
      {"MergedWithPrevious", {6, 1, 3, 3, 2}},     // a- b- - c
      {"MergedWithNext", {0, 4, 3, 5}},            // a -b - -c
      {"Contiguous", {0, 3, 1, 7, 2}},             // a - b -- c
  };
  for (const auto& [behavior, want] : cases) {
    const nlohmann::json pre = {
        {"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}};
    auto t = Tokenizer::FromJson(SmallTokenizer(vocab, merges, pre), "", "split");
    ASSERT_TRUE(t.ok()) << behavior << ": " << t.status();
    EXPECT_EQ(*(*t)->Encode("a-b--c", false), want) << behavior;
  }
}

TEST(TokenizerConfigTest, PostProcessorsAndTransformersAddBosRules) {
  const nlohmann::json vocab = {{"<s>", 0}, {"</s>", 1}, {"x", 2}};
  const nlohmann::json merges = nlohmann::json::array();
  // Sequence[ByteLevel, TemplateProcessing] (Llama-3.1): BOS before, EOS after.
  const nlohmann::json post = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}},
        {{"type", "TemplateProcessing"},
         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                     {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                             {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}}}}};
  auto t = Tokenizer::FromJson(SmallTokenizer(vocab, merges, nullptr, post), "", "seq");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("x", true), (std::vector<int32_t>{0, 2, 1}));
  EXPECT_EQ(*(*t)->Encode("x", false), (std::vector<int32_t>{2}));
  // A Llama-class tokenizer takes add_bos_token / add_eos_token from its
  // config instead, as transformers rebuilds the post-processor.
  t = Tokenizer::FromJson(SmallTokenizer(vocab, merges, nullptr, post),
                          R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                              "add_bos_token": false, "add_eos_token": true})",
                          "llama-class");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("x", true), (std::vector<int32_t>{2, 1}));
  // Any other class keeps tokenizer.json's post-processor.
  t = Tokenizer::FromJson(SmallTokenizer(vocab, merges, nullptr, post),
                          R"({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "add_bos_token": false})",
                          "other-class");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("x", true), (std::vector<int32_t>{0, 2, 1}));
  // Unsupported processors are refused with their JSON path.
  nlohmann::json bert = post;
  bert["processors"][1] = {{"type", "BertProcessing"}};
  t = Tokenizer::FromJson(SmallTokenizer(vocab, merges, nullptr, bert), "", "x/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("post_processor.processors[1]: 'BertProcessing' is not supported"),
            std::string::npos)
      << t.status();
}

// continuing_subword_prefix: a word's later characters start as "##c", and a
// merge of a and b makes a + b less b's prefix (HF's BPE).
TEST(TokenizerConfigTest, ContinuingSubwordPrefixMarksLaterCharacters) {
  const nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"##a", 2}, {"##b", 3}, {"ab", 4}, {"##ab", 5}, {"[UNK]", 6}};
  nlohmann::json j = nlohmann::json::parse(SmallTokenizer(vocab, {"a ##b", "##a ##b"}, {{"type", "WhitespaceSplit"}}));
  j["normalizer"] = nullptr;
  j["model"]["continuing_subword_prefix"] = "##";
  j["model"]["unk_token"] = "[UNK]";
  j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}};
  auto t = Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status();
  // "abab": a ##b ##a ##b -> ab ##ab; "ba": b ##a; "b" alone has no prefix.
  EXPECT_EQ(*(*t)->Encode("abab ba b", false), (std::vector<int32_t>{4, 5, 1, 2, 1}));
  EXPECT_EQ((*t)->Decode({4, 5, 1, 2, 1}, false), "abab ba b");
  // The first token keeps its prefix; a later one without it gains a space.
  EXPECT_EQ((*t)->Decode({5, 4}, false), "##ab ab");
}

// end_of_word_suffix: a word's last character ends in "</w>", so a word "a"
// is "a</w>", not "a"; a BPEDecoder turns the suffix into a space, except in
// the last token, and a stream holds that space back until it knows.
TEST(TokenizerConfigTest, EndOfWordSuffixMarksTheLastCharacter) {
  const nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"a</w>", 2}, {"b</w>", 3}, {"ab</w>", 4}, {"<unk>", 5}};
  nlohmann::json j = nlohmann::json::parse(SmallTokenizer(vocab, {"a b</w>"}, {{"type", "Whitespace"}}));
  j["normalizer"] = nullptr;
  j["model"]["end_of_word_suffix"] = "</w>";
  j["model"]["unk_token"] = "<unk>";
  j["decoder"] = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
  auto t = Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("a ab ba", false), (std::vector<int32_t>{2, 4, 1, 2}));
  EXPECT_EQ((*t)->Decode({2, 4, 1, 2}, false), "a ab ba");
  EXPECT_TRUE((*t)->decodes_last_differently());
  EXPECT_EQ((*t)->TokenBytes(4, false, false, /*last=*/false), "ab ");
  EXPECT_EQ((*t)->TokenBytes(4, false, false, /*last=*/true), "ab");
}

TEST(TokenizerConfigTest, SubwordMarkerFormsHfRefusesAreRefusedWithTheirPath) {
  const nlohmann::json vocab = {{"a", 0}, {"#", 1}, {"a#", 2}};
  nlohmann::json j = nlohmann::json::parse(SmallTokenizer(vocab, {"a #"}));
  j["model"]["continuing_subword_prefix"] = "##";  // "#" is shorter than the prefix
  auto t = Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("model.merges: '#' is shorter than continuing_subword_prefix"),
            std::string::npos)
      << t.status();
  j["model"]["continuing_subword_prefix"] = "";  // GPT-2 writes empty strings: no marker
  EXPECT_TRUE(Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json").ok());
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "WordPiece"}}, {{"type", "Fuse"}}}}};
  t = Tokenizer::FromJson(j.dump(), "", "x/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("decoder.decoders[0]: 'WordPiece' is supported only as the whole decoder"),
            std::string::npos)
      << t.status();
}

}  // namespace
}  // namespace tessera
