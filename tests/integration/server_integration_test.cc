// Starts the real tessera-server on a loopback ephemeral port with the
// fixture model and talks to it through the real client library.
#include <signal.h>

#include <filesystem>
#include <optional>
#include <thread>

#include "client/tessera_client.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "model/utf8.h"
#include "nlohmann/json.hpp"
#include "tests/support/fixtures.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

using testing::Greedy;
using testing::PromptIds;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = testing::ServerProcess::Start(testing::TinyLlamaModelDir()).release();
    ASSERT_NE(server_, nullptr);
    auto c = TesseraClient::Connect(server_->address());
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = c->release();
    tokenizer_ = Tokenizer::FromDir(testing::TinyLlamaModelDir())->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete tokenizer_;
  }

  static v1::GenerateRequest GreedyRequest(int prompt, bool as_text) {
    v1::GenerateRequest r;
    if (as_text) {
      r.set_text(testing::Expected()["prompts"][prompt]["text"].get<std::string>());
    } else {
      for (int32_t id : PromptIds(prompt)) r.mutable_token_ids()->add_ids(id);
    }
    r.mutable_sampling()->set_max_new_tokens(16);
    r.mutable_stopping()->set_ignore_eos(true);
    return r;
  }

  static testing::ServerProcess* server_;
  static TesseraClient* client_;
  static Tokenizer* tokenizer_;
};
testing::ServerProcess* ServerTest::server_ = nullptr;
TesseraClient* ServerTest::client_ = nullptr;
Tokenizer* ServerTest::tokenizer_ = nullptr;

TEST_F(ServerTest, GenerateReturnsFixtureGreedyTokens) {
  for (int p = 0; p < 6; ++p) {
    auto r = client_->Generate(GreedyRequest(p, /*as_text=*/true));
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<int32_t> ids(r->token_ids().begin(), r->token_ids().end());
    EXPECT_EQ(ids, Greedy("base", p)) << "prompt " << p;
    EXPECT_EQ(r->text(), tokenizer_->Decode(ids, /*skip_special=*/true));
    EXPECT_EQ(r->finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(r->usage().prompt_tokens(), PromptIds(p).size());
    EXPECT_EQ(r->usage().completion_tokens(), 16u);
    EXPECT_GE(r->timings().total_ms(), r->timings().time_to_first_token_ms());
    EXPECT_GE(r->timings().time_to_first_token_ms(), r->timings().queue_ms());
  }
}

TEST_F(ServerTest, GenerateStreamDeliversTheSameTokensInPieces) {
  for (int p = 0; p < 6; ++p) {
    std::vector<v1::GenerateStreamResponse> messages;
    absl::Status s =
        client_->GenerateStream(GreedyRequest(p, /*as_text=*/false),
                                [&](const v1::GenerateStreamResponse& m) { messages.push_back(m); });
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_GE(messages.size(), 2u);
    std::vector<int32_t> ids;
    std::string text;
    for (size_t i = 0; i + 1 < messages.size(); ++i) {
      EXPECT_EQ(messages[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
      EXPECT_TRUE(IsValidUtf8(messages[i].text_delta()));
      ids.insert(ids.end(), messages[i].token_ids().begin(), messages[i].token_ids().end());
      text += messages[i].text_delta();
    }
    const v1::GenerateStreamResponse& last = messages.back();
    EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(last.usage().completion_tokens(), 16u);
    EXPECT_EQ(ids, Greedy("base", p)) << "prompt " << p;
    EXPECT_EQ(text, tokenizer_->Decode(ids, true));
  }
}

TEST_F(ServerTest, ConcurrentClientsEachGetTheirOwnAnswer) {
  std::vector<std::thread> threads;
  std::vector<std::vector<int32_t>> got(12);
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      auto r = client_->Generate(GreedyRequest(i % 6, i % 2 == 0));
      if (r.ok()) got[i].assign(r->token_ids().begin(), r->token_ids().end());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 12; ++i) EXPECT_EQ(got[i], Greedy("base", i % 6)) << "request " << i;
}

TEST_F(ServerTest, ServerInfoDescribesTheModel) {
  auto info = client_->ServerInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->model(), "model");
  EXPECT_EQ(info->architecture(), "LlamaForCausalLM");
  EXPECT_EQ(info->dtype(), "float32");
  EXPECT_EQ(info->context_length(), 256u);
  EXPECT_EQ(info->vocab_size(), 512u);
  EXPECT_EQ(info->backend(), "cpu");
  EXPECT_EQ(info->quantization(), "none");
  EXPECT_EQ(
      std::vector<std::string>(info->high_precision_weights().begin(), info->high_precision_weights().end()),
      (std::vector<std::string>{"embed_tokens", "lm_head", "norms"}));
  EXPECT_GT(info->weight_bytes(), 600000u);  // fp32 tiny model: 634 kB of weights
  EXPECT_GE(info->load_peak_rss_bytes(), info->weight_bytes());
  EXPECT_FALSE(info->version().empty());
}

TEST_F(ServerTest, TokenizeAndDetokenizeUseTheModelsTokenizer) {
  const std::string text = testing::Expected()["prompts"][1]["text"].get<std::string>();
  for (const bool special : {false, true}) {
    auto ids = client_->Tokenize(text, special);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, *tokenizer_->Encode(text, special));
    auto back = client_->Detokenize(*ids, /*skip_special_tokens=*/true);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }
  EXPECT_EQ(*client_->Tokenize(text, false), PromptIds(1));  // the fixture's HF ids
  auto bad = client_->Detokenize({1, 512}, false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("token id 512 is outside the vocabulary [0, 512)"), std::string::npos)
      << bad.status();
  auto big = client_->Tokenize(std::string((1 << 20) + 1, 'a'), false);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(big.status().message().find("--max-prompt-bytes"), std::string::npos) << big.status();
}

TEST_F(ServerTest, HealthServiceReportsServing) {
  auto stub = grpc::health::v1::Health::NewStub(client_->channel());
  for (const char* service : {"", "tessera.v1.Inference"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << service << ": " << s.error_message();
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
}

TEST_F(ServerTest, ReflectionListsAndDescribesTheApi) {
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(client_->channel());
  grpc::ClientContext ctx;
  auto stream = stub->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_NE(std::find(names.begin(), names.end(), "tessera.v1.Inference"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.health.v1.Health"), names.end());

  req.set_file_containing_symbol("tessera.v1.Inference");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_GE(resp.file_descriptor_response().file_descriptor_proto_size(), 1);
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(resp.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.package(), "tessera.v1");
  ASSERT_EQ(file.service_size(), 1);
  std::vector<std::string> methods;
  for (const auto& m : file.service(0).method()) methods.push_back(m.name());
  EXPECT_EQ(methods, (std::vector<std::string>{"Generate", "GenerateStream", "ServerInfo", "Tokenize", "Detokenize"}));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest&)> edit;
  absl::StatusCode code;
  std::string message;
};

TEST_F(ServerTest, BadRequestsGetClearStatusesAndTheServerKeepsServing) {
  const std::vector<BadCase> cases = {
      {"empty text", [](auto& r) { r.set_text(""); }, absl::StatusCode::kInvalidArgument, "prompt is empty"},
      {"no prompt", [](auto& r) { r.clear_prompt(); }, absl::StatusCode::kInvalidArgument, "prompt is empty"},
      {"empty ids", [](auto& r) { r.mutable_token_ids()->clear_ids(); }, absl::StatusCode::kInvalidArgument,
       "prompt is empty"},
      {"too long",
       [](auto& r) {
         r.mutable_token_ids()->clear_ids();
         for (int i = 0; i < 300; ++i) r.mutable_token_ids()->add_ids(100);
       },
       absl::StatusCode::kInvalidArgument, "context limit is 256"},
      {"max_new 0", [](auto& r) { r.mutable_sampling()->set_max_new_tokens(0); },
       absl::StatusCode::kInvalidArgument, "max_new_tokens must be in [1, 256]"},
      {"max_new huge", [](auto& r) { r.mutable_sampling()->set_max_new_tokens(100000); },
       absl::StatusCode::kInvalidArgument, "got 100000"},
      {"top_p 0", [](auto& r) { r.mutable_sampling()->set_top_p(0.0f); }, absl::StatusCode::kInvalidArgument,
       "top_p must be in (0, 1]"},
      {"top_p 1.5", [](auto& r) { r.mutable_sampling()->set_top_p(1.5f); },
       absl::StatusCode::kInvalidArgument, "top_p must be in (0, 1]"},
      {"temperature", [](auto& r) { r.mutable_sampling()->set_temperature(-0.5f); },
       absl::StatusCode::kInvalidArgument, "temperature must be >= 0"},
      {"id too big", [](auto& r) { r.mutable_token_ids()->add_ids(512); }, absl::StatusCode::kInvalidArgument,
       "prompt token id 512 at index 4 is outside the vocabulary [0, 512)"},
      {"negative id", [](auto& r) { r.mutable_token_ids()->add_ids(-3); }, absl::StatusCode::kInvalidArgument,
       "outside the vocabulary"},
      {"unknown adapter", [](auto& r) { r.set_adapter_id("acme/support-bot"); }, absl::StatusCode::kNotFound,
       "adapter 'acme/support-bot' is not loaded"},
      {"empty stop", [](auto& r) { r.mutable_stopping()->add_stop(""); }, absl::StatusCode::kInvalidArgument,
       "stop strings must not be empty"},
  };
  for (const BadCase& c : cases) {
    for (bool stream : {false, true}) {
      v1::GenerateRequest req = GreedyRequest(0, /*as_text=*/false);
      c.edit(req);
      absl::Status s;
      if (stream) {
        int messages = 0;
        s = client_->GenerateStream(req, [&](const auto&) { ++messages; });
        EXPECT_EQ(messages, 0) << c.name;
      } else {
        s = client_->Generate(req).status();
      }
      EXPECT_EQ(s.code(), c.code) << c.name << (stream ? " (stream): " : ": ") << s;
      EXPECT_NE(s.message().find(c.message), std::string::npos) << c.name << ": " << s;
    }
  }
  auto r = client_->Generate(GreedyRequest(1, true));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::vector<int32_t>(r->token_ids().begin(), r->token_ids().end()), Greedy("base", 1));
}

TEST_F(ServerTest, ClientCancellationFreesTheRequest) {
  auto stub = v1::Inference::NewStub(client_->channel());
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    v1::GenerateRequest req = GreedyRequest(2, true);
    req.mutable_sampling()->set_max_new_tokens(200);
    auto reader = stub->GenerateStream(&ctx, req);
    v1::GenerateStreamResponse m;
    ASSERT_TRUE(reader->Read(&m));
    ctx.TryCancel();
    while (reader->Read(&m)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.error_code() == grpc::StatusCode::CANCELLED || s.ok()) << s.error_message();
  }
  auto r = client_->Generate(GreedyRequest(3, true));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::vector<int32_t>(r->token_ids().begin(), r->token_ids().end()), Greedy("base", 3));
}

TEST(ServerLifecycleTest, SigtermLetsInFlightStreamsFinishThenExitsZero) {
  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--shutdown-grace", "20s"});
  ASSERT_NE(server, nullptr);
  auto client = TesseraClient::Connect(server->address());
  ASSERT_TRUE(client.ok());
  v1::GenerateRequest req;
  req.set_text("Once upon a time");
  req.mutable_sampling()->set_max_new_tokens(200);
  req.mutable_stopping()->set_ignore_eos(true);
  std::atomic<int> messages{0};
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  absl::Status stream_status;
  std::thread t([&] {
    stream_status = (*client)->GenerateStream(req, [&](const v1::GenerateStreamResponse& m) {
      if (messages.fetch_add(1) == 0) server->process().Signal(SIGTERM);
      if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) reason = m.finish_reason();
    });
  });
  t.join();
  EXPECT_TRUE(stream_status.ok()) << stream_status;
  EXPECT_EQ(reason, v1::FINISH_REASON_LENGTH);  // finished, not cancelled
  EXPECT_EQ(messages.load(), 201);              // every token, then the summary
  std::optional<int> code = server->process().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.has_value()) << "server did not exit";
  EXPECT_EQ(*code, 0) << server->Log();
  EXPECT_NE(server->Log().find("received SIGTERM"), std::string::npos);
}

TEST(GenerationDefaultsTest, GenerationConfigSetsWhatARequestLeavesUnset) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  testing::WriteFileOrDie(dir.Join("generation_config.json"),
                          R"({"do_sample": true, "temperature": 0.8, "top_k": 20, "top_p": 0.9, "eos_token_id": 1})");
  auto server = testing::ServerProcess::Start(dir.path());
  ASSERT_NE(server, nullptr);
  auto client = TesseraClient::Connect(server->address());
  ASSERT_TRUE(client.ok());
  auto info = (*client)->ServerInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FLOAT_EQ(info->generation_defaults().temperature(), 0.8f);
  EXPECT_EQ(info->generation_defaults().top_k(), 20u);
  EXPECT_FLOAT_EQ(info->generation_defaults().top_p(), 0.9f);
  EXPECT_EQ(info->generation_defaults().source(), "generation_config.json");

  auto tokens = [&](std::optional<float> temperature, std::optional<uint32_t> top_k, std::optional<float> top_p) {
    v1::GenerateRequest r;
    for (int32_t id : PromptIds(0)) r.mutable_token_ids()->add_ids(id);
    r.mutable_sampling()->set_max_new_tokens(16);
    r.mutable_sampling()->set_seed(7);
    if (temperature) r.mutable_sampling()->set_temperature(*temperature);
    if (top_k) r.mutable_sampling()->set_top_k(*top_k);
    if (top_p) r.mutable_sampling()->set_top_p(*top_p);
    r.mutable_stopping()->set_ignore_eos(true);
    auto g = (*client)->Generate(r);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? std::vector<int32_t>(g->token_ids().begin(), g->token_ids().end()) : std::vector<int32_t>{};
  };
  const std::vector<int32_t> unset = tokens(std::nullopt, std::nullopt, std::nullopt);
  EXPECT_EQ(unset, tokens(0.8f, 20u, 0.9f));     // the defaults, spelled out
  EXPECT_NE(unset, tokens(1.5f, 0u, 1.0f));      // not just any sampling
  EXPECT_EQ(tokens(0.0f, std::nullopt, std::nullopt), Greedy("base", 0));  // an explicit 0 is greedy

  // The bundled model has no do_sample: greedy by default.
  auto plain = testing::ServerProcess::Start(testing::TinyLlamaModelDir());
  ASSERT_NE(plain, nullptr);
  auto plain_client = TesseraClient::Connect(plain->address());
  ASSERT_TRUE(plain_client.ok());
  auto plain_info = (*plain_client)->ServerInfo();
  ASSERT_TRUE(plain_info.ok());
  EXPECT_EQ(plain_info->generation_defaults().temperature(), 0.0f);
  EXPECT_EQ(plain_info->generation_defaults().source(), "generation_config.json (do_sample false)");

  // A bad value stops the server at start, naming the key.
  testing::WriteFileOrDie(dir.Join("generation_config.json"), R"({"do_sample": true, "top_p": 2})");
  testing::CommandResult r = testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth",
                                                  "--model", dir.path(), "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'top_p' must be a number in (0, 1]"), std::string::npos) << r.output;
}

// A server on a model folder with each real tokenizer of the parity fixtures
// (random weights of a small shape, the tokenizer's vocabulary) starts, and
// Tokenize / Detokenize return what HF tokenizers does.
TEST(RealTokenizerServerTest, TokenizeReturnsHfIdsForEveryFixtureTokenizer) {
  for (const std::string name :
       {"gpt2", "llama2", "mistral_7b", "llama3", "llama3_1", "qwen2_5", "mistral_nemo", "deepseek_v3", "yi"}) {
    const std::string tok_dir = std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/" + name;
    auto tok = Tokenizer::FromDir(tok_dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    testing::TempDir dir;
    const std::string model = dir.Join("model");
    testing::CommandResult g = testing::RunCommand(
        {testing::BinaryPath("bench/tessera-genmodel"), "--output", model, "--hidden", "32", "--intermediate", "64",
         "--layers", "1", "--heads", "2", "--kv_heads", "1", "--vocab", std::to_string((*tok)->vocab_size()),
         "--max_position", "512", "--tokenizer_from", tok_dir});
    ASSERT_EQ(g.exit_code, 0) << g.output;
    auto server = testing::ServerProcess::Start(model);
    ASSERT_NE(server, nullptr) << name;
    auto client = TesseraClient::Connect(server->address());
    ASSERT_TRUE(client.ok());
    const nlohmann::json expected = nlohmann::json::parse(testing::ReadFileOrDie(tok_dir + "/expected.json"));
    int checked = 0;
    for (size_t i = 0; i < expected["cases"].size(); i += 10) {
      const auto& c = expected["cases"][i];
      auto ids = (*client)->Tokenize(c["text"].get<std::string>(), /*add_special_tokens=*/true);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << name << ": " << c["text"];
      auto text = (*client)->Detokenize(c["ids"].get<std::vector<int32_t>>(), /*skip_special_tokens=*/true);
      ASSERT_TRUE(text.ok()) << text.status();
      EXPECT_EQ(*text, c["decoded_skip_special"].get<std::string>()) << name << ": " << c["text"];
      ++checked;
    }
    EXPECT_GE(checked, 20) << name;

    // A chat request is the template's rendering (Python jinja2's, from the
    // chat-template fixtures), tokenized without special tokens: the same
    // prompt, and so the same greedy tokens, as those ids sent directly.
    v1::GenerateRequest chat;
    v1::ChatMessage* m = chat.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content("Hello!");
    chat.mutable_sampling()->set_max_new_tokens(6);
    chat.mutable_sampling()->set_temperature(0);
    chat.mutable_stopping()->set_ignore_eos(true);
    auto info = (*client)->ServerInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    auto reply = (*client)->Generate(chat);
    const std::string chat_fixture = std::string(TESSERA_FIXTURES_DIR) + "/chat_templates/" + name + ".json";
    if (!std::filesystem::exists(chat_fixture)) {  // its tokenizer_config.json has no template
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kFailedPrecondition) << name << ": " << reply.status();
      EXPECT_NE(reply.status().message().find("no chat template"), std::string::npos) << reply.status();
      EXPECT_EQ(info->chat_template(), "none: the model folder has no chat template");
      continue;
    }
    EXPECT_EQ(info->chat_template(), "tokenizer_config.json") << name;
    ASSERT_TRUE(reply.ok()) << name << ": " << reply.status();
    const nlohmann::json rendered = nlohmann::json::parse(testing::ReadFileOrDie(chat_fixture));
    const auto& first = rendered["cases"][0];
    ASSERT_EQ(first["messages"][0]["content"], "Hello!");
    ASSERT_TRUE(first["add_generation_prompt"].get<bool>());
    auto prompt_ids = (*client)->Tokenize(first["expected"].get<std::string>(), /*add_special_tokens=*/false);
    ASSERT_TRUE(prompt_ids.ok()) << prompt_ids.status();
    v1::GenerateRequest direct = chat;
    direct.mutable_token_ids()->mutable_ids()->Assign(prompt_ids->begin(), prompt_ids->end());
    auto expected_reply = (*client)->Generate(direct);
    ASSERT_TRUE(expected_reply.ok()) << expected_reply.status();
    EXPECT_EQ(reply->usage().prompt_tokens(), prompt_ids->size()) << name;
    EXPECT_EQ(std::vector<int32_t>(reply->token_ids().begin(), reply->token_ids().end()),
              std::vector<int32_t>(expected_reply->token_ids().begin(), expected_reply->token_ids().end()))
        << name;
    EXPECT_EQ(reply->token_ids_size(), 6);

    // A chat without messages is INVALID_ARGUMENT.
    chat.mutable_chat()->clear_messages();
    reply = (*client)->Generate(chat);
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument) << reply.status();
    EXPECT_NE(reply.status().message().find("the chat has no messages"), std::string::npos) << reply.status();
  }
}

// Bad model folders stop the server at start with a message naming the file
// and the problem: exit code 1, never a crash.
void ExpectStartFails(const std::string& model_dir, const std::vector<std::string>& needles) {
  testing::CommandResult r =
      testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model",
                           model_dir, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const std::string& n : needles)
    EXPECT_NE(r.output.find(n), std::string::npos) << n << "\n" << r.output;
}

TEST(BadModelFolderTest, MissingFolder) {
  ExpectStartFails("/nonexistent/tiny", {"/nonexistent/tiny", "does not exist"});
}

TEST(BadModelFolderTest, TruncatedSafetensors) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  const std::string w = testing::ReadFileOrDie(dir.Join("model.safetensors"));
  testing::WriteFileOrDie(dir.Join("model.safetensors"), w.substr(0, 6));
  ExpectStartFails(dir.path(), {dir.Join("model.safetensors"), "too short"});
}

TEST(BadModelFolderTest, HeaderOffsetPastTheEnd) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  std::string w = testing::ReadFileOrDie(dir.Join("model.safetensors"));
  // Drop the last tensor's bytes: its data_offsets now point past the end.
  testing::WriteFileOrDie(dir.Join("model.safetensors"), w.substr(0, w.size() - 256));
  ExpectStartFails(dir.path(), {dir.Join("model.safetensors"), "point past the end of the data"});
}

TEST(BadModelFolderTest, UnknownDtype) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  std::string w = testing::ReadFileOrDie(dir.Join("model.safetensors"));
  const size_t at = w.find("\"F32\"");
  ASSERT_NE(at, std::string::npos);
  w.replace(at, 5, "\"Q9X\"");
  testing::WriteFileOrDie(dir.Join("model.safetensors"), w);
  ExpectStartFails(dir.path(), {dir.Join("model.safetensors"), "unsupported dtype 'Q9X'"});
}

TEST(BadModelFolderTest, ShapeDisagreesWithConfig) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(dir.Join("config.json")));
  j["hidden_size"] = 96;
  testing::WriteFileOrDie(dir.Join("config.json"), j.dump());
  ExpectStartFails(dir.path(), {"model.embed_tokens.weight", "[512, 64]", "[512, 96]"});
}

TEST(BadModelFolderTest, BadConfigAndTokenizer) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  testing::WriteFileOrDie(dir.Join("config.json"), "{\"architectures\": [\"LlamaForCausalLM\"");
  ExpectStartFails(dir.path(), {dir.Join("config.json"), "not valid JSON"});
  testing::CopyModelTo(dir.path());
  std::filesystem::remove(dir.Join("tokenizer.json"));
  ExpectStartFails(dir.path(), {dir.Join("tokenizer.json"), "cannot open"});
}

TEST(QuantizedServerTest, Int4Group32ServesTheQuantizedReference) {
  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(),
                                              {"--quantize", "int4", "--quant-group-size", "32"});
  ASSERT_NE(server, nullptr);
  auto client = TesseraClient::Connect(server->address());
  ASSERT_TRUE(client.ok());
  auto info = (*client)->ServerInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->quantization(), "int4 (group 32)");
  EXPECT_EQ(info->high_precision_weights_size(), 3);
  for (int p = 0; p < 6; ++p) {
    v1::GenerateRequest req;
    for (int32_t id : PromptIds(p)) req.mutable_token_ids()->add_ids(id);
    req.mutable_sampling()->set_max_new_tokens(16);
    req.mutable_stopping()->set_ignore_eos(true);
    auto r = (*client)->Generate(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(std::vector<int32_t>(r->token_ids().begin(), r->token_ids().end()), Greedy("quant_int4", p));
  }
}

class AdapterServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bad_dir_ = new testing::TempDir();
    // A broken adapter: bias mode peft allows but Tessera does not serve.
    std::filesystem::copy(testing::TinyLlamaDir() + "/adapters/lora", bad_dir_->Join("bad"));
    nlohmann::json j =
        nlohmann::json::parse(testing::ReadFileOrDie(bad_dir_->Join("bad/adapter_config.json")));
    j["bias"] = "all";
    std::filesystem::permissions(bad_dir_->Join("bad/adapter_config.json"),
                                 std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    testing::WriteFileOrDie(bad_dir_->Join("bad/adapter_config.json"), j.dump());
    std::vector<std::string> flags;
    for (const char* a : {"lora", "lora2", "road", "diablo", "seal"}) {
      flags.push_back("--adapter");
      flags.push_back(std::string(a) + "=" + testing::TinyLlamaDir() + "/adapters/" + a);
    }
    flags.push_back("--adapter=broken=" + bad_dir_->Join("bad"));
    server_ = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), flags).release();
    ASSERT_NE(server_, nullptr);
    client_ = TesseraClient::Connect(server_->address())->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete bad_dir_;
  }
  static v1::GenerateRequest Request(int prompt, const std::string& adapter) {
    v1::GenerateRequest r;
    for (int32_t id : PromptIds(prompt)) r.mutable_token_ids()->add_ids(id);
    r.set_adapter_id(adapter);
    r.mutable_sampling()->set_max_new_tokens(16);
    r.mutable_stopping()->set_ignore_eos(true);
    return r;
  }
  static testing::TempDir* bad_dir_;
  static testing::ServerProcess* server_;
  static TesseraClient* client_;
};
testing::TempDir* AdapterServerTest::bad_dir_ = nullptr;
testing::ServerProcess* AdapterServerTest::server_ = nullptr;
TesseraClient* AdapterServerTest::client_ = nullptr;

TEST_F(AdapterServerTest, ConcurrentRequestsWithDifferentAdaptersEachGetTheirOwn) {
  // 36 requests (6 prompts x 5 adapters + base) at once: they share batches.
  std::vector<std::string> adapters = {"", "lora", "lora2", "road", "diablo", "seal"};
  std::vector<std::thread> threads;
  std::vector<std::vector<int32_t>> got(36);
  for (int i = 0; i < 36; ++i) {
    threads.emplace_back([&, i] {
      auto r = client_->Generate(Request(i % 6, adapters[i / 6]));
      if (r.ok()) got[i].assign(r->token_ids().begin(), r->token_ids().end());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 36; ++i) {
    const std::string variant = adapters[i / 6].empty() ? "base" : adapters[i / 6];
    EXPECT_EQ(got[i], Greedy(variant, i % 6)) << variant << " prompt " << i % 6;
  }
}

TEST_F(AdapterServerTest, BadAndUnknownAdaptersGetClearStatuses) {
  auto bad = client_->Generate(Request(0, "broken"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("adapter 'broken' failed to load at start-up"), std::string::npos)
      << bad.status();
  EXPECT_NE(bad.status().message().find("bias 'all' is not supported"), std::string::npos) << bad.status();
  auto unknown = client_->Generate(Request(0, "lora3"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("loaded: diablo, lora, lora2, road, seal"), std::string::npos)
      << unknown.status();
  // The others keep serving.
  auto ok = client_->Generate(Request(2, "road"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(std::vector<int32_t>(ok->token_ids().begin(), ok->token_ids().end()), Greedy("road", 2));
  auto info = client_->ServerInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(std::vector<std::string>(info->adapter_kinds().begin(), info->adapter_kinds().end()),
            (std::vector<std::string>{"lora", "seal", "road", "diablo"}));
  EXPECT_EQ(info->loaded_adapters_size(), 5);
}

TEST(ContextLimitTest, RopeIdServesBeyondTheTrainingLength) {
  auto server =
      testing::ServerProcess::Start(testing::TinyLlamaDir() + "/model-ropeid", {"--max-step-tokens", "200"});
  ASSERT_NE(server, nullptr);
  auto client = TesseraClient::Connect(server->address());
  ASSERT_TRUE(client.ok());
  auto info = (*client)->ServerInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->context_length(), 2048u);  // 8 x 256 tokens of KV cache, not 256
  EXPECT_EQ(info->context_limit_reason(), "RoPE-ID model, limited by the KV cache (2048 tokens)");
  const auto& long_case = testing::Expected()["rope_id"]["long"];
  v1::GenerateRequest req;
  for (int32_t id : long_case["ids"]) req.mutable_token_ids()->add_ids(id);
  req.mutable_sampling()->set_max_new_tokens(16);
  req.mutable_stopping()->set_ignore_eos(true);
  auto r = (*client)->Generate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::vector<int32_t>(r->token_ids().begin(), r->token_ids().end()),
            long_case["greedy"].get<std::vector<int32_t>>());
  // Over the effective limit: both numbers in the message.
  req.mutable_token_ids()->clear_ids();
  for (int i = 0; i < 2100; ++i) req.mutable_token_ids()->add_ids(100);
  auto over = (*client)->Generate(req);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("prompt has 2100 tokens but the context limit is 2048"),
            std::string::npos)
      << over.status();
}

TEST(ContextLimitTest, PlainRopeNeedsExplicitExtension) {
  testing::CommandResult r =
      testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model",
                           testing::TinyLlamaModelDir(), "--listen", "127.0.0.1:0", "--max-context", "1024"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--max-context 1024 exceeds max_position_embeddings 256"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--allow-context-extension"), std::string::npos) << r.output;

  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(),
                                              {"--max-context", "1024", "--allow-context-extension"});
  ASSERT_NE(server, nullptr);
  auto client = TesseraClient::Connect(server->address());
  auto info = (*client)->ServerInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->context_length(), 1024u);
  EXPECT_NE(info->context_limit_reason().find("--allow-context-extension"), std::string::npos);
  EXPECT_NE(server->Log().find("expect quality to degrade"), std::string::npos);
}

TEST(BadModelFolderTest, MalformedRopeId) {
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(dir.Join("config.json")));
  j["rope_id"] = {{"rotated_fraction", 0.5}, {"inv_freq", {1.0, 0.1}}};
  testing::WriteFileOrDie(dir.Join("config.json"), j.dump());
  ExpectStartFails(dir.path(), {dir.Join("config.json"), "rope_id.inv_freq has 2 entries"});
}

TEST(BadFlagsTest, QuantizationFlags) {
  for (const auto& [flags, needle] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--quantize", "int3"}, "unknown --quantize value 'int3' (use int4, int8 or none)"},
           {{"--quant-group-size", "12"}, "--quant-group-size must be a positive multiple of 8"},
           {{"--quant-group-size", "0"}, "--quant-group-size must be a positive multiple of 8"}}) {
    std::vector<std::string> argv = {testing::BinaryPath("server/tessera-server"),
                                     "--insecure-no-auth",
                                     "--model",
                                     testing::TinyLlamaModelDir(),
                                     "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    testing::CommandResult r = testing::RunCommand(argv);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  }
}

TEST(BadModelFolderTest, CorruptPrequantizedCheckpoint) {
  testing::TempDir dir;
  const std::string out = dir.Join("q");
  testing::CommandResult q = testing::RunCommand({testing::BinaryPath("server/tessera-quantize"), "--model",
                                                  testing::TinyLlamaModelDir(), "--output", out});
  ASSERT_EQ(q.exit_code, 0) << q.output;
  const std::string w = testing::ReadFileOrDie(out + "/model.safetensors");
  testing::WriteFileOrDie(out + "/model.safetensors", w.substr(0, w.size() / 3));
  testing::CommandResult r =
      testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model", out,
                           "--listen", "127.0.0.1:0", "--quantize", "int4"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(out + "/model.safetensors"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("past the end of the data"), std::string::npos) << r.output;
}

TEST(BadFlagsTest, PortAlreadyServedByAnotherServerIsRefused) {
  // Without SO_REUSEPORT the second server cannot share the first one's port
  // (and silently take half of its connections).
  auto first = testing::ServerProcess::Start(testing::TinyLlamaModelDir());
  ASSERT_NE(first, nullptr);
  testing::CommandResult r =
      testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model",
                           testing::TinyLlamaModelDir(), "--listen", first->address()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot listen on '" + first->address() + "'"), std::string::npos) << r.output;
}

TEST(BadFlagsTest, UnusableListenAddress) {
  testing::CommandResult r =
      testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model",
                           testing::TinyLlamaModelDir(), "--listen", "not-an-address"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot listen on 'not-an-address'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tessera
