// Chat requests in ToGenerationParams: the rendered prompt's ids, and a
// clear status for every way a client can get a chat wrong.
#include "gtest/gtest.h"
#include "server/api/request_conversion.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

class ChatRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tok = Tokenizer::FromDir(testing::TinyLlamaModelDir());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
    auto t = ChatTemplate::FromSource(
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}"
        "<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
        "<s>", "</s>");
    ASSERT_TRUE(t.ok()) << t.status();
    template_.emplace(*std::move(t));
  }
  static v1::GenerateRequest Chat(std::initializer_list<std::pair<std::string, std::string>> turns) {
    v1::GenerateRequest r;
    r.mutable_chat();  // set even when empty
    for (const auto& [role, content] : turns) {
      v1::ChatMessage* m = r.mutable_chat()->add_messages();
      m->set_role(role);
      m->set_content(content);
    }
    return r;
  }
  absl::StatusOr<GenerationParams> Convert(const v1::GenerateRequest& r, const RequestLimits& limits = {}) {
    return ToGenerationParams(r, *tokenizer_, limits, &*template_);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<ChatTemplate> template_;
};

TEST_F(ChatRequestTest, ThePromptIsTheRenderingTokenizedWithoutSpecialTokens) {
  auto p = Convert(Chat({{"system", "Be brief."}, {"user", "Hi there"}}));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->prompt_ids, *tokenizer_->Encode("<system>Be brief.<user>Hi there<assistant>", false));
}

TEST_F(ChatRequestTest, EveryMistakeHasAClearStatus) {
  auto code = [&](const v1::GenerateRequest& r, const RequestLimits& limits = {}) {
    return Convert(r, limits).status();
  };
  absl::Status s = ToGenerationParams(Chat({{"user", "x"}}), *tokenizer_, {}, nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no chat template"), std::string::npos) << s;
  EXPECT_EQ(code(Chat({})).code(), absl::StatusCode::kInvalidArgument);
  s = code(Chat({{"", "no role"}}));
  EXPECT_NE(s.message().find("needs a role"), std::string::npos) << s;
  s = code(Chat({{"user", std::string("\xff\xfe")}}));
  EXPECT_NE(s.message().find("valid UTF-8"), std::string::npos) << s;
  s = code(Chat({{"tool", "result"}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "the model's chat template refused these messages: no tools here");
  RequestLimits small;
  small.max_prompt_bytes = 10;
  s = code(Chat({{"user", "0123456789"}}), small);
  EXPECT_NE(s.message().find("--max-prompt-bytes"), std::string::npos) << s;
  small.max_prompt_bytes = 1 << 20;
  small.max_chat_messages = 2;
  s = code(Chat({{"user", "a"}, {"assistant", "b"}, {"user", "c"}}), small);
  EXPECT_NE(s.message().find("3 messages, over the limit of 2"), std::string::npos) << s;
  small.max_chat_messages = 1024;
  small.context_length = 3;
  s = code(Chat({{"user", std::string(200, 'a')}}), small);
  EXPECT_NE(s.message().find("over the context length"), std::string::npos) << s;
}

}  // namespace
}  // namespace tessera
