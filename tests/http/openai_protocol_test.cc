#include "server/http/openai_protocol.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

OpenAiRequest ParseOk(const std::string& body, OpenAiEndpoint e = OpenAiEndpoint::kCompletions) {
  absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(body, e, 16);
  EXPECT_TRUE(r.ok()) << r.status() << " for " << body;
  return r.ok() ? *r : OpenAiRequest{};
}

void ExpectInvalid(const std::string& body, const std::string& needle,
                   OpenAiEndpoint e = OpenAiEndpoint::kCompletions) {
  absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(body, e, 16);
  ASSERT_FALSE(r.ok()) << body;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(needle)) << body;
}

TEST(OpenAiProtocolTest, CompletionFieldsMapToTheGenerateRequest) {
  OpenAiRequest r = ParseOk(R"({"model": "acme/de", "prompt": "Hello", "max_tokens": 5, "temperature": 0.5,
      "top_p": 0.9, "seed": 42, "stop": ["\n", "."], "n": 2, "stream": true,
      "stream_options": {"include_usage": true}, "top_k": 40, "user": "u1", "logprobs": null})");
  EXPECT_EQ(r.model, "acme/de");
  EXPECT_EQ(r.generate.text(), "Hello");
  EXPECT_EQ(r.generate.sampling().max_new_tokens(), 5u);
  EXPECT_FLOAT_EQ(r.generate.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(r.generate.sampling().top_p(), 0.9f);
  EXPECT_EQ(r.generate.sampling().seed(), 42u);
  EXPECT_EQ(r.generate.sampling().top_k(), 40u);
  ASSERT_EQ(r.generate.stopping().stop_size(), 2);
  EXPECT_EQ(r.generate.stopping().stop(1), ".");
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.generate.request_id(), "u1");
}

TEST(OpenAiProtocolTest, DefaultsAndPromptForms) {
  OpenAiRequest r = ParseOk(R"({"prompt": ["one"]})");
  EXPECT_EQ(r.model, "");
  EXPECT_EQ(r.generate.text(), "one");
  EXPECT_EQ(r.generate.sampling().max_new_tokens(), 16u);
  EXPECT_FALSE(r.generate.sampling().has_temperature());
  EXPECT_FALSE(r.generate.sampling().has_seed());
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream);
  r = ParseOk(R"({"prompt": [1, 2, 3], "stop": "x", "top_k": -1})");
  EXPECT_THAT(r.generate.token_ids().ids(), ::testing::ElementsAre(1, 2, 3));
  EXPECT_EQ(r.generate.stopping().stop(0), "x");
  EXPECT_EQ(r.generate.sampling().top_k(), 0u);
}

TEST(OpenAiProtocolTest, ChatMessagesWithStringAndTextParts) {
  OpenAiRequest r = ParseOk(R"({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
      "max_completion_tokens": 7})",
                            OpenAiEndpoint::kChatCompletions);
  ASSERT_EQ(r.generate.chat().messages_size(), 2);
  EXPECT_EQ(r.generate.chat().messages(0).role(), "system");
  EXPECT_EQ(r.generate.chat().messages(1).content(), "Hi there");
  EXPECT_EQ(r.generate.sampling().max_new_tokens(), 7u);
}

TEST(OpenAiProtocolTest, RefusesWhatItCannotDoByName) {
  ExpectInvalid("not json", "JSON");
  ExpectInvalid("[1]", "JSON object");
  ExpectInvalid(R"({})", "'prompt' is required");
  ExpectInvalid(R"({"prompt": ["a", "b"]})", "several prompts");
  ExpectInvalid(R"({"prompt": [[1], [2]]})", "several prompts");
  ExpectInvalid(R"({"prompt": 5})", "'prompt'");
  ExpectInvalid(R"({"prompt": [1, -2]})", "token id");
  ExpectInvalid(R"({"prompt": "x", "max_tokens": 0})", "max_tokens");
  ExpectInvalid(R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens");
  ExpectInvalid(R"({"prompt": "x", "max_tokens": "9"})", "max_tokens");
  ExpectInvalid(R"({"prompt": "x", "temperature": 3})", "'temperature'");
  ExpectInvalid(R"({"prompt": "x", "top_p": 0})", "'top_p'");
  ExpectInvalid(R"({"prompt": "x", "seed": -1})", "seed");
  ExpectInvalid(R"({"prompt": "x", "n": 0})", "n");
  ExpectInvalid(R"({"prompt": "x", "n": 17})", "n");
  ExpectInvalid(R"({"prompt": "x", "stop": [1]})", "'stop'");
  ExpectInvalid(R"({"prompt": "x", "logprobs": 2})", "'logprobs'");
  ExpectInvalid(R"({"prompt": "x", "echo": true})", "'echo'");
  ExpectInvalid(R"({"prompt": "x", "best_of": 3})", "'best_of'");
  ExpectInvalid(R"({"prompt": "x", "presence_penalty": 0.5})", "'presence_penalty'");
  ExpectInvalid(R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream: true");
  ExpectInvalid(R"({"prompt": "x", "model": 3})", "'model'");
  ExpectInvalid(R"({"messages": [{"role": "user", "content": "x"}]})", "/v1/chat/completions");
  ExpectInvalid(R"({"messages": []})", "non-empty", OpenAiEndpoint::kChatCompletions);
  ExpectInvalid(R"({"messages": [{"content": "x"}]})", "role", OpenAiEndpoint::kChatCompletions);
  ExpectInvalid(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "text",
                OpenAiEndpoint::kChatCompletions);
  ExpectInvalid(R"({"messages": [{"role": "user", "content": "x"}], "tools": []})", "'tools'",
                OpenAiEndpoint::kChatCompletions);
  // Deep nesting is refused before nlohmann's recursive parser sees it.
  ExpectInvalid("{\"prompt\": " + std::string(100000, '[') + std::string(100000, ']') + "}", "nest");
  // Neutral values of unsupported features pass.
  ParseOk(R"({"prompt": "x", "logprobs": false, "echo": false, "best_of": 1, "frequency_penalty": 0,
      "suffix": "", "logit_bias": {}, "response_format": {"type": "text"}})");
}

TEST(OpenAiProtocolTest, ResponsesInOpenAisShape) {
  OpenAiRequest r = ParseOk(R"({"prompt": "x", "n": 2})");
  OpenAiResponseId id = NewResponseId(OpenAiEndpoint::kCompletions, "tiny");
  EXPECT_THAT(id.id, ::testing::StartsWith("cmpl-"));
  EXPECT_NE(id.id, NewResponseId(OpenAiEndpoint::kCompletions, "tiny").id);
  std::vector<GenerationResult> results(2);
  results[0].text = "ab";
  results[0].prompt_tokens = 3;
  results[0].completion_tokens = 2;
  results[0].finish_reason = FinishReason::kEos;
  results[1].text = "c";
  results[1].prompt_tokens = 3;
  results[1].completion_tokens = 4;
  results[1].finish_reason = FinishReason::kLength;
  json out = CompletionResponse(r, id, results);
  EXPECT_EQ(out["object"], "text_completion");
  EXPECT_EQ(out["model"], "tiny");
  EXPECT_EQ(out["choices"][0]["text"], "ab");
  EXPECT_EQ(out["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(out["choices"][1]["index"], 1);
  EXPECT_EQ(out["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(out["usage"], json({{"prompt_tokens", 3}, {"completion_tokens", 6}, {"total_tokens", 9}}));

  OpenAiRequest chat = ParseOk(R"({"messages": [{"role": "user", "content": "x"}]})", OpenAiEndpoint::kChatCompletions);
  OpenAiResponseId cid = NewResponseId(OpenAiEndpoint::kChatCompletions, "tiny");
  out = CompletionResponse(chat, cid, {results[0]});
  EXPECT_EQ(out["object"], "chat.completion");
  EXPECT_EQ(out["choices"][0]["message"], json({{"role", "assistant"}, {"content", "ab"}}));
  json chunk = StreamChunk(OpenAiEndpoint::kChatCompletions, cid, 0, "he", nullptr, true);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk["choices"][0]["delta"], json({{"role", "assistant"}, {"content", "he"}}));
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  const FinishReason len = FinishReason::kLength;
  chunk = StreamChunk(OpenAiEndpoint::kChatCompletions, cid, 0, "", &len, false);
  EXPECT_EQ(chunk["choices"][0]["delta"], json::object());
  EXPECT_EQ(chunk["choices"][0]["finish_reason"], "length");
  json usage = UsageChunk(OpenAiEndpoint::kChatCompletions, cid, {results[1]});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
}

TEST(OpenAiProtocolTest, ErrorsMapToHttpStatusAndShape) {
  EXPECT_EQ(HttpStatusOf(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusOf(absl::UnauthenticatedError("x")), 401);
  EXPECT_EQ(HttpStatusOf(absl::PermissionDeniedError("x")), 403);
  EXPECT_EQ(HttpStatusOf(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusOf(absl::ResourceExhaustedError("x")), 429);
  EXPECT_EQ(HttpStatusOf(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusOf(absl::InternalError("x")), 500);
  json e = ErrorBody(absl::NotFoundError("adapter 'q' is not loaded"));
  EXPECT_EQ(e["error"]["message"], "adapter 'q' is not loaded");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["code"], "not_found");
  EXPECT_TRUE(e["error"]["param"].is_null());
  EXPECT_EQ(ErrorBody(absl::UnauthenticatedError("k"))["error"]["type"], "authentication_error");
}

}  // namespace
}  // namespace tessera
