// Chat templates of real checkpoints against Python's jinja2 run with
// transformers' settings (tests/fixtures/chat_templates/, made by
// tools/chat-template-parity/generate.py), and how a model folder's template
// is found.
#include "model/chat_template.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

using nlohmann::ordered_json;

class ChatTemplateParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateParityTest, EveryConversationRendersLikeTransformers) {
  const std::string path = std::string(TESSERA_FIXTURES_DIR) + "/chat_templates/" + GetParam() + ".json";
  const ordered_json fixture = ordered_json::parse(testing::ReadFileOrDie(path));
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromSource(fixture["template"].get<std::string>(),
                                                            fixture["bos_token"], fixture["eos_token"]);
  ASSERT_TRUE(t.ok()) << t.status();
  int rendered = 0, refused = 0;
  for (const ordered_json& c : fixture["cases"]) {
    ordered_json context;
    context["messages"] = c["messages"];
    context["add_generation_prompt"] = c["add_generation_prompt"];
    if (c.contains("tools")) context["tools"] = c["tools"];
    absl::StatusOr<std::string> out = t->RenderContext(context);
    if (c.contains("error")) {
      ASSERT_FALSE(out.ok()) << c.dump();
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(out.status().message(),
                "the model's chat template refused these messages: " + c["error"].get<std::string>());
      ++refused;
    } else {
      ASSERT_TRUE(out.ok()) << out.status() << "\n" << c.dump();
      EXPECT_EQ(*out, c["expected"].get<std::string>()) << c.dump();
      ++rendered;
    }
  }
  EXPECT_EQ(rendered + refused, 32);
}

INSTANTIATE_TEST_SUITE_P(Models, ChatTemplateParityTest,
                         ::testing::Values("llama3", "llama3_1", "qwen2_5", "qwen3", "mistral_nemo", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

TEST(ChatTemplateTest, FoundWhereTransformersLooks) {
  testing::TempDir dir;
  EXPECT_FALSE(ChatTemplate::FromDir(dir.path())->has_value());  // no tokenizer_config.json
  testing::WriteFileOrDie(dir.Join("tokenizer_config.json"),
                          R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>",
                              "chat_template": [{"name": "tool_use", "template": "T"},
                                                {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}{{ eos_token }}"}]})");
  absl::StatusOr<std::optional<ChatTemplate>> t = ChatTemplate::FromDir(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(t->has_value());
  const ChatMessage messages[] = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(*(*t)->Render(messages, true), "<s>[system]S[user]U[assistant]</s>");
  EXPECT_EQ(*(*t)->Render(messages, false), "<s>[system]S[user]U</s>");
  // chat_template.jinja beside it wins.
  testing::WriteFileOrDie(dir.Join("chat_template.jinja"), "{{ messages | length }} messages\n");
  EXPECT_EQ(*(*ChatTemplate::FromDir(dir.path()))->Render(messages, true), "2 messages\n");
  // A template that does not parse names the file and the line.
  testing::WriteFileOrDie(dir.Join("chat_template.jinja"), "ok\n{% for %}");
  absl::StatusOr<std::optional<ChatTemplate>> bad = ChatTemplate::FromDir(dir.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("chat_template.jinja: chat template line 2: expected a name"),
            std::string::npos)
      << bad.status();
  std::filesystem::remove(dir.Join("chat_template.jinja"));
  testing::WriteFileOrDie(dir.Join("tokenizer_config.json"), R"({"chat_template": 7})");
  EXPECT_FALSE(ChatTemplate::FromDir(dir.path()).ok());
  testing::WriteFileOrDie(dir.Join("tokenizer_config.json"), R"({"eos_token": "</s>"})");
  EXPECT_FALSE(ChatTemplate::FromDir(dir.path())->has_value());
}

}  // namespace
}  // namespace tessera
