// The OpenAI-compatible HTTP API end to end: the real server with tenants,
// uploads and a chat template, driven by the official `openai` npm package
// (tests/node) and by raw HTTP for what the SDK hides. What to expect comes
// from the same server's gRPC API, so both front ends must agree token for
// token.
#include <httplib.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/tessera_client.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/fixtures.h"
#include "tests/support/prometheus.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kPrompt[] = "Once upon a time";
constexpr int kMaxTokens = 8;
constexpr int kLongTokens = 240;

class OpenAiApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The fixture model with a chat template added.
    const std::string model = dir_.Join("model");
    fs::copy(testing::TinyLlamaModelDir(), model, fs::copy_options::recursive);
    json config = json::parse(testing::ReadFileOrDie(model + "/tokenizer_config.json"));
    config["chat_template"] =
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}";
    testing::WriteFileOrDie(model + "/tokenizer_config.json", config.dump());
    testing::WriteFileOrDie(
        dir_.Join("tenants.json"),
        absl::StrCat(R"({"tenants": [{"id": "acme", "role": "user", "api_key_sha256": ")", Sha256Hex("acme-key"),
                     R"("}, {"id": "zeta", "role": "user", "api_key_sha256": ")", Sha256Hex("zeta-key"), R"("}]})"));
    server_ = testing::ServerProcess::Start(
        model, {"--data-dir", dir_.Join("data"), "--tenants", dir_.Join("tenants.json"), "--testing-step-delay",
                "10ms"});
    ASSERT_NE(server_, nullptr);
    acme_ = *TesseraClient::Connect(server_->address(), absl::Seconds(10), "acme-key");
    v1::UploadMetadata meta;
    meta.set_name("mine");
    ASSERT_TRUE(acme_->UploadAdapter(std::string(TESSERA_FIXTURES_DIR) + "/tiny-llama/adapters/lora", meta).ok());
    base_model_ = fs::path(model).filename().string();
  }

  v1::GenerateRequest Greedy() const {
    v1::GenerateRequest r;
    r.mutable_sampling()->set_max_new_tokens(kMaxTokens);
    r.mutable_sampling()->set_temperature(0);
    r.mutable_stopping()->set_ignore_eos(true);
    return r;
  }
  std::string GrpcText(v1::GenerateRequest r) {
    auto reply = acme_->Generate(r);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->text() : "";
  }
  testing::CommandResult Node(const json& cfg) {
    return testing::RunCommand({"/usr/bin/node", std::string(TESSERA_SOURCE_DIR) + "/tests/node/openai_sdk_test.mjs",
                                cfg.dump()},
                               absl::Seconds(120));
  }
  std::map<std::string, double> Metrics() {
    httplib::Client http("127.0.0.1", server_->metrics_port());
    auto res = http.Get("/metrics");
    EXPECT_TRUE(res && res->status == 200);
    if (!res) return {};
    EXPECT_TRUE(testing::PromtoolCheck(res->body).ok()) << testing::PromtoolCheck(res->body);
    auto parsed = testing::ParsePrometheusText(res->body);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed.ok() ? *parsed : std::map<std::string, double>{};
  }
  json Config(const std::string& mode) {
    return {{"mode", mode},
            {"url", absl::StrCat("http://127.0.0.1:", server_->http_port())},
            {"acme_key", "acme-key"},
            {"zeta_key", "zeta-key"},
            {"base_model", base_model_},
            {"adapter", "mine"},
            {"prompt", kPrompt},
            {"max_tokens", kMaxTokens},
            {"long_tokens", kLongTokens}};
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<TesseraClient> acme_;
  std::string base_model_;
};

TEST_F(OpenAiApiTest, OpenAiSdkGetsWhatGrpcGets) {
  v1::GenerateRequest base = Greedy();
  base.set_text(kPrompt);
  v1::GenerateRequest adapter = base;
  adapter.set_adapter_id("mine");
  v1::GenerateRequest chat = Greedy();
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Tell me a story.");
  auto prompt_ids = acme_->Tokenize(kPrompt, /*add_special_tokens=*/true);
  ASSERT_TRUE(prompt_ids.ok()) << prompt_ids.status();
  json cfg = Config("main");
  cfg["expect_base"] = GrpcText(base);
  cfg["expect_adapter"] = GrpcText(adapter);
  cfg["expect_chat"] = GrpcText(chat);
  cfg["chat_message"] = "Tell me a story.";
  cfg["prompt_tokens"] = prompt_ids->size();
  ASSERT_NE(cfg["expect_base"], cfg["expect_adapter"]);

  const auto before = Metrics();
  testing::CommandResult r = Node(cfg);
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << server_->Log();
  EXPECT_THAT(r.output, HasSubstr("all 10 checks passed"));
  const auto after = Metrics();
  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    return testing::SumSeries(after, name, labels) - testing::SumSeries(before, name, labels);
  };
  EXPECT_EQ(delta("tessera_http_requests_total", {{"route", "/v1/completions"}, {"code", "200"}}), 7);
  EXPECT_EQ(delta("tessera_http_requests_total", {{"route", "/v1/completions"}, {"code", "401"}}), 1);
  EXPECT_EQ(delta("tessera_http_requests_total", {{"route", "/v1/completions"}, {"code", "404"}}), 2);
  EXPECT_EQ(delta("tessera_http_requests_total", {{"route", "/v1/completions"}, {"code", "400"}}), 2);
  EXPECT_EQ(delta("tessera_http_requests_total", {{"route", "/v1/chat/completions"}, {"code", "200"}}), 2);
  // Completions: base, adapter, 2 choices, stop, 2 seeded, stream; chat 2.
  EXPECT_EQ(delta("tessera_generation_requests_total", {{"tenant", "acme"}}), 10);
  EXPECT_EQ(delta("tessera_generation_requests_total", {{"tenant", "acme"}, {"adapter_kind", "lora"}}), 2);
  EXPECT_EQ(delta("tessera_adapter_requests_total", {{"adapter", "acme/mine"}}), 2);
}

TEST_F(OpenAiApiTest, AbortedStreamCancelsItsRequest) {
  const auto before = Metrics();
  testing::CommandResult r = Node(Config("cancel"));
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << server_->Log();
  // The request ends long before its 240 tokens (2.4 s of steps) would.
  std::map<std::string, double> after;
  const absl::Time end = absl::Now() + absl::Seconds(5);
  do {
    after = Metrics();
  } while (testing::SumSeries(after, "tessera_generation_requests_total", {{"finish_reason", "cancelled"}}) < 1 &&
           absl::Now() < end);
  EXPECT_EQ(testing::SumSeries(after, "tessera_generation_requests_total", {{"finish_reason", "cancelled"}}), 1);
  EXPECT_EQ(testing::SumSeries(after, "tessera_num_requests_running"), 0);
  const double tokens = testing::SumSeries(after, "tessera_generation_tokens_total") -
                        testing::SumSeries(before, "tessera_generation_tokens_total");
  EXPECT_GE(tokens, 2);
  EXPECT_LT(tokens, kLongTokens / 2);
}

TEST_F(OpenAiApiTest, ProbesModelsAndErrorsOverRawHttp) {
  httplib::Client http("127.0.0.1", server_->http_port());
  auto res = http.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = http.Get("/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  res = http.Get("/v1/models");  // no key
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  json e = json::parse(res->body);
  EXPECT_EQ(e["error"]["type"], "authentication_error");
  EXPECT_THAT(e["error"]["message"].get<std::string>(), HasSubstr("Bearer"));

  httplib::Headers zeta = {{"Authorization", "Bearer zeta-key"}};
  res = http.Get("/v1/models", zeta);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  json models = json::parse(res->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);  // zeta sees the base model only
  EXPECT_EQ(models["data"][0]["id"], base_model_);

  res = http.Post("/v1/completions", zeta, "{\"prompt\": ", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["type"], "invalid_request_error");
  // Another tenant's private adapter is as unknown as a missing one.
  res = http.Post("/v1/completions", zeta, R"({"prompt": "x", "model": "acme/mine"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = http.Post("/v1/completions", zeta, R"({"prompt": "x", "model": "acme/nothing"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = http.Get("/v2/whatever", zeta);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(json::parse(res->body)["error"]["message"].get<std::string>(), HasSubstr("/v1/completions"));
  // A body past what --max-prompt-bytes can need is refused before it is read.
  res = http.Post("/v1/completions", zeta, std::string(8 << 20, ' '), "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 413);
  EXPECT_THAT(json::parse(res->body)["error"]["message"].get<std::string>(), HasSubstr("--max-prompt-bytes"));
  // An empty prompt is refused as over gRPC.
  res = http.Post("/v1/completions", zeta, R"({"prompt": ""})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(json::parse(res->body)["error"]["message"].get<std::string>(), HasSubstr("prompt is empty"));
}

}  // namespace
}  // namespace tessera
