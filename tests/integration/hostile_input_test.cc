// A hostile client against the real tessera-server on loopback: every input
// that once crashed, starved or degraded the server gets a clear error, and
// the server keeps serving other requests with fixture-exact tokens.
#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/tessera_client.h"
#include "common/sha256.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "model/safetensors.h"
#include "tessera/v1/adapters.grpc.pb.h"
#include "tests/support/fixtures.h"
#include "tests/support/prometheus.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::Greedy;
using testing::PromptIds;

std::string FixtureAdapterDir(const std::string& kind) {
  return testing::TinyLlamaDir() + "/adapters/" + kind;
}

std::vector<int32_t> Ids(const google::protobuf::RepeatedField<int32_t>& f) { return {f.begin(), f.end()}; }

v1::GenerateRequest GreedyRequest(int p, int n = 4) {
  v1::GenerateRequest r;
  for (int32_t id : PromptIds(p)) r.mutable_token_ids()->add_ids(id);
  r.mutable_sampling()->set_max_new_tokens(n);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

std::vector<int32_t> BaseGreedy(int p, int n) {
  std::vector<int32_t> v = Greedy("base", p);
  v.resize(n);
  return v;
}

// The bytes of a safetensors file holding `tensors`.
std::string SafetensorsBytes(const std::vector<TensorToWrite>& tensors) {
  testing::TempDir dir;
  const std::string path = dir.Join("t.safetensors");
  EXPECT_TRUE(WriteSafetensors(path, tensors).ok());
  return testing::ReadFileOrDie(path);
}

// The fixture LoRA's tensors, each renamed by rename(name).
std::vector<TensorToWrite> RenamedLora(const std::function<std::string(const std::string&)>& rename) {
  auto f = *SafetensorsFile::Open(FixtureAdapterDir("lora") + "/adapter_model.safetensors");
  std::vector<TensorToWrite> out;
  for (const auto& [name, view] : f->tensors()) {
    out.push_back({rename(name), view.dtype, view.shape, std::vector<uint8_t>(view.data, view.data + view.nbytes)});
  }
  return out;
}

// A complete upload stream: metadata, both files in 1 MiB chunks, sha256.
std::vector<v1::UploadAdapterRequest> UploadStream(const std::string& name, const std::string& config,
                                                   const std::string& model, const std::string& description = "") {
  std::vector<v1::UploadAdapterRequest> m(1);
  m[0].mutable_metadata()->set_name(name);
  m[0].mutable_metadata()->set_description(description);
  for (const auto& [file, bytes] : {std::pair<const char*, const std::string*>{"adapter_config.json", &config},
                                    {"adapter_model.safetensors", &model}}) {
    for (size_t at = 0; at < bytes->size(); at += 1 << 20) {
      v1::UploadAdapterRequest c;
      c.mutable_chunk()->set_file(file);
      c.mutable_chunk()->set_data(bytes->substr(at, 1 << 20));
      m.push_back(std::move(c));
    }
  }
  v1::UploadAdapterRequest done;
  done.set_sha256(Sha256Hex(config + model));
  m.push_back(std::move(done));
  return m;
}

std::map<std::string, double> Scrape(const testing::ServerProcess& server, std::string* body = nullptr) {
  httplib::Client http("127.0.0.1", server.metrics_port());
  auto res = http.Get("/metrics");
  EXPECT_TRUE(res && res->status == 200);
  if (!res) return {};
  if (body) *body = res->body;
  auto parsed = testing::ParsePrometheusText(res->body);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : std::map<std::string, double>{};
}

double Requests(const testing::ServerProcess& server, const std::string& rpc, const std::string& code) {
  return testing::SumSeries(Scrape(server), "tessera_requests_total", {{"rpc", rpc}, {"code", code}});
}

class HostileInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new testing::TempDir();
    server_ = testing::ServerProcess::Start(testing::TinyLlamaModelDir(),
                                            {"--data-dir", data_->path(), "--max-uploads-per-tenant", "4",
                                             "--upload-idle-timeout", "2s",
                                             "--testing-step-delay", "5ms"})
                  .release();
    ASSERT_NE(server_, nullptr);
    auto c = TesseraClient::Connect(server_->address(), absl::Seconds(10));
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = c->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete data_;
  }

  // The server still answers a greedy request with the fixture's tokens.
  static void ExpectStillServing() {
    auto r = client_->Generate(GreedyRequest(1));
    ASSERT_TRUE(r.ok()) << r.status() << "\n" << server_->Log();
    EXPECT_EQ(Ids(r->token_ids()), BaseGreedy(1, 4));
    EXPECT_TRUE(client_->ListAdapters().ok());
  }

  static void ExpectUploadRefused(const std::vector<v1::UploadAdapterRequest>& stream, absl::StatusCode code,
                                  const std::string& needle) {
    auto r = client_->UploadAdapterRaw(stream);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
    EXPECT_LT(r.status().message().size(), 1000u) << "the error echoes its input";
    ExpectStillServing();
  }

  static testing::TempDir* data_;
  static testing::ServerProcess* server_;
  static TesseraClient* client_;
};
testing::TempDir* HostileInputTest::data_ = nullptr;
testing::ServerProcess* HostileInputTest::server_ = nullptr;
TesseraClient* HostileInputTest::client_ = nullptr;

const std::string kLoraConfig() { return testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_config.json"); }

TEST_F(HostileInputTest, AdapterWithAnOutOfRangeLayerNumber) {
  const std::string model = SafetensorsBytes(RenamedLora([](const std::string& n) {
    const std::string from = "model.layers.0.";
    const size_t at = n.find(from);
    return at == std::string::npos ? n
                                   : n.substr(0, at) + "model.layers.99999999999999999999." +
                                         n.substr(at + from.size());
  }));
  ExpectUploadRefused(UploadStream("huge-layer", kLoraConfig(), model), absl::StatusCode::kInvalidArgument,
                      "targets a module the base model does not have");
}

TEST_F(HostileInputTest, AdapterWithAVeryLongTensorName) {
  const std::string model = SafetensorsBytes(RenamedLora([](const std::string& n) {
    return n.find("layers.0.self_attn.q_proj.lora_A") != std::string::npos
               ? "base_model.model.model.layers.0." + std::string(60000, 'x') + "_proj.lora_A.weight"
               : n;
  }));
  ExpectUploadRefused(UploadStream("long-name", kLoraConfig(), model), absl::StatusCode::kInvalidArgument,
                      "over the limit of 1024");
}

TEST_F(HostileInputTest, AdapterConfigNestedVeryDeep) {
  const std::string model = testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_model.safetensors");
  nlohmann::json config = nlohmann::json::parse(kLoraConfig());
  config.erase("modules_to_save");
  std::string text = config.dump();
  text.pop_back();  // drop the closing brace
  text += ", \"modules_to_save\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  ExpectUploadRefused(UploadStream("deep", text, model), absl::StatusCode::kInvalidArgument,
                      "more than 64 levels deep");
  // The same depth inside a safetensors header.
  std::string header = "{\"t\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  while (header.size() % 8) header.push_back(' ');
  std::string st(8, '\0');
  for (int i = 0; i < 8; ++i) st[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  ExpectUploadRefused(UploadStream("deep-header", kLoraConfig(), st + header), absl::StatusCode::kInvalidArgument,
                      "more than 64 levels deep");
}

TEST_F(HostileInputTest, HugeConfigAndDescriptionAreRefusedAndListingsStayReadable) {
  const std::string model = testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_model.safetensors");
  std::string config = kLoraConfig();
  config.pop_back();
  while (config.back() != '}') config.pop_back();
  config.pop_back();
  config += ", \"padding\": \"" + std::string(70 << 20, 'p') + "\"}";
  ExpectUploadRefused(UploadStream("big-config", config, model), absl::StatusCode::kInvalidArgument,
                      "over the limit of 256 KiB");
  ExpectUploadRefused(UploadStream("big-description", kLoraConfig(), model, std::string(2000, 'd')),
                      absl::StatusCode::kInvalidArgument, "over the limit of 1024");
  EXPECT_TRUE(fs::is_empty(data_->path() + "/staging"));
}

TEST_F(HostileInputTest, ZeroByteTensorWithAnOverflowingShape) {
  const std::string header = R"({"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight":)"
                             R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})";
  std::string st(8, '\0');
  for (int i = 0; i < 8; ++i) st[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  ExpectUploadRefused(UploadStream("overflow", kLoraConfig(), st + header), absl::StatusCode::kInvalidArgument,
                      "more bytes than fit in 64 bits");
}

TEST_F(HostileInputTest, HostileWatermarkCredentials) {
  auto files = TesseraClient::ReadCredentialFiles(testing::TinyLlamaDir() + "/owner_secret/passport.safetensors",
                                                  testing::TinyLlamaDir() + "/owner_secret/original_lora.safetensors");
  ASSERT_TRUE(files.ok()) << files.status();
  const std::vector<std::string> raw_factors = {
      SafetensorsBytes({{"model.layers.99999999999999999999.self_attn.q_proj.lora_A.weight", DType::kF32, {1},
                         std::vector<uint8_t>(4)}}),
      SafetensorsBytes(
          {{"model.layers.0." + std::string(60000, 'q') + ".lora_A.weight", DType::kF32, {1}, std::vector<uint8_t>(4)}}),
  };
  for (const std::string& raw : raw_factors) {
    v1::WatermarkCredentialFiles bad = *files;
    bad.set_raw_factors_safetensors(raw);
    auto reg = client_->RegisterWatermark("hostile", bad);
    ASSERT_FALSE(reg.ok());
    EXPECT_EQ(reg.status().code(), absl::StatusCode::kInvalidArgument) << reg.status();
    EXPECT_LT(reg.status().message().size(), 1000u);
    v1::VerifyOwnershipRequest verify;
    verify.set_adapter_id("none-such");
    *verify.mutable_files() = bad;
    auto v = client_->VerifyOwnership(verify);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << v.status();
    ExpectStillServing();
  }
  // No secret is left behind in the vault's staging folder.
  const std::string staging = data_->path() + "/vault/.staging";
  EXPECT_TRUE(!fs::exists(staging) || fs::is_empty(staging));
}

TEST_F(HostileInputTest, MegabytePromptIsRefusedAtOnceWhileASmallRequestIsServed) {
  std::string words;
  while (words.size() < 1000000) words += "hello world ";
  std::atomic<bool> small_ok{false};
  std::thread small([&] {
    auto r = client_->Generate(GreedyRequest(2));
    small_ok = r.ok() && Ids(r->token_ids()) == BaseGreedy(2, 4);
  });
  v1::GenerateRequest big;
  big.set_text(words);
  const absl::Time start = absl::Now();
  auto r = client_->Generate(big);
  const absl::Duration took = absl::Now() - start;
  small.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("over the context length"), std::string::npos) << r.status();
  EXPECT_LT(took, absl::Seconds(1));
  EXPECT_TRUE(small_ok.load());
  // Past --max-prompt-bytes the refusal names the flag.
  big.set_text(std::string(7 << 20, 'a'));
  r = client_->Generate(big);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("--max-prompt-bytes"), std::string::npos) << r.status();
  ExpectStillServing();
}

TEST_F(HostileInputTest, StopStringLimits) {
  v1::GenerateRequest r = GreedyRequest(0);
  for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop("x");
  auto s = client_->Generate(r);
  EXPECT_NE(s.status().message().find("--max-stop-strings"), std::string::npos) << s.status();
  r = GreedyRequest(0);
  r.mutable_stopping()->add_stop(std::string(300, 's'));
  s = client_->Generate(r);
  EXPECT_NE(s.status().message().find("--max-stop-string-bytes"), std::string::npos) << s.status();
}

TEST_F(HostileInputTest, UnknownMethodsShareOneMetricLabel) {
  grpc::GenericStub stub(client_->channel());
  for (int i = 0; i < 30; ++i) {
    grpc::ClientContext ctx;
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;
    grpc::Status status;
    std::atomic<bool> done{false};
    absl::Mutex mu;
    stub.UnaryCall(&ctx, absl::StrCat("/made.up.Service", i, "/Method", i), grpc::StubOptions(), &request,
                   &response, [&](grpc::Status s) {
                     absl::MutexLock lock(&mu);
                     status = s;
                     done = true;
                   });
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](std::atomic<bool>* d) { return d->load(); }, &done));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  std::string body;
  Scrape(*server_, &body);
  EXPECT_EQ(body.find("made.up"), std::string::npos);
  EXPECT_GE(testing::SumSeries(Scrape(*server_), "tessera_requests_total", {{"rpc", "unknown"}}), 30);
}

TEST_F(HostileInputTest, StalledUploadsAreCappedThenReapedAndTheServerKeepsAccepting) {
  auto stub = v1::Adapters::NewStub(client_->channel());
  struct Stalled {
    grpc::ClientContext ctx;
    v1::AdapterInfo reply;
    std::unique_ptr<grpc::ClientWriter<v1::UploadAdapterRequest>> writer;
  };
  std::vector<std::unique_ptr<Stalled>> stalled;
  for (int i = 0; i < 4; ++i) {
    auto s = std::make_unique<Stalled>();
    s->writer = stub->UploadAdapter(&s->ctx, &s->reply);
    v1::UploadAdapterRequest m;
    m.mutable_metadata()->set_name(absl::StrCat("stalled-", i));
    ASSERT_TRUE(s->writer->Write(m));
    stalled.push_back(std::move(s));
  }
  absl::SleepFor(absl::Milliseconds(300));  // the server has admitted the four
  // 1,100 more on a second connection (the count that once exhausted the
  // server's file descriptors): each is refused at once, none opens a file.
  {
    auto other = TesseraClient::Connect(server_->address(), absl::Seconds(10));
    ASSERT_TRUE(other.ok()) << other.status();
    auto flood_stub = v1::Adapters::NewStub((*other)->channel());
    int refused = 0;
    for (int i = 0; i < 1100; ++i) {
      grpc::ClientContext ctx;
      v1::AdapterInfo reply;
      auto w = flood_stub->UploadAdapter(&ctx, &reply);
      v1::UploadAdapterRequest m;
      m.mutable_metadata()->set_name(absl::StrCat("flood-", i));
      w->Write(m);
      w->WritesDone();
      const grpc::Status st = w->Finish();
      refused += st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? 1 : 0;
    }
    EXPECT_EQ(refused, 1100);
    EXPECT_LE(std::distance(fs::directory_iterator(data_->path() + "/staging"), fs::directory_iterator()), 4);
  }
  // A fifth is refused while the four are in flight, naming the flag.
  auto fifth = client_->UploadAdapterRaw(UploadStream(
      "fifth", kLoraConfig(), testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_model.safetensors")));
  EXPECT_EQ(fifth.status().code(), absl::StatusCode::kResourceExhausted) << fifth.status();
  EXPECT_NE(fifth.status().message().find("--max-uploads-per-tenant"), std::string::npos) << fifth.status();
  // Idle for more than --upload-idle-timeout: the server cancels them.
  for (auto& s : stalled) {
    const grpc::Status st = s->writer->Finish();
    EXPECT_FALSE(st.ok());
  }
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (absl::Now() < end && !fs::is_empty(data_->path() + "/staging")) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_TRUE(fs::is_empty(data_->path() + "/staging"));
  // New connections and uploads work again.
  auto fresh = TesseraClient::Connect(server_->address(), absl::Seconds(10));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  auto ok = (*fresh)->UploadAdapter(FixtureAdapterDir("lora"), [] {
    v1::UploadMetadata m;
    m.set_name("after-stall");
    return m;
  }());
  EXPECT_TRUE(ok.ok()) << ok.status();
  ExpectStillServing();
}

// A server of its own, slow enough (50 ms per step) that a cancel or a 300 ms
// deadline always lands mid-stream, however loaded the machine is.
TEST(StreamCodesTest, CancelledAndDeadlineCutStreamsAreCountedUnderTheirCodes) {
  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--testing-step-delay", "50ms"});
  ASSERT_NE(server, nullptr);
  auto client = TesseraClient::Connect(server->address(), absl::Seconds(10));
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string rpc = "tessera.v1.Inference/GenerateStream";
  // Cancelled by the client after the first message.
  {
    auto stub = v1::Inference::NewStub((*client)->channel());
    grpc::ClientContext ctx;
    v1::GenerateRequest r = GreedyRequest(0, 200);
    auto reader = stub->GenerateStream(&ctx, r);
    v1::GenerateStreamResponse m;
    ASSERT_TRUE(reader->Read(&m));
    ctx.TryCancel();
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // Cut by its deadline mid-stream.
  {
    auto stub = v1::Inference::NewStub((*client)->channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    v1::GenerateRequest r = GreedyRequest(0, 200);
    auto reader = stub->GenerateStream(&ctx, r);
    v1::GenerateStreamResponse m;
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end &&
         (Requests(*server, rpc, "CANCELLED") < 1 || Requests(*server, rpc, "DEADLINE_EXCEEDED") < 1)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(Requests(*server, rpc, "CANCELLED"), 1);
  EXPECT_EQ(Requests(*server, rpc, "DEADLINE_EXCEEDED"), 1);
  EXPECT_EQ(Requests(*server, rpc, "OK"), 0);
}

}  // namespace
}  // namespace tessera
