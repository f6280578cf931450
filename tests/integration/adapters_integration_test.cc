// The multi-tenant serving core end to end: the real tessera-server on a
// loopback ephemeral port, the real client, the fixture model and adapters.
// Adapter outputs are checked against the HF/peft greedy fixtures.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <limits>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "client/tessera_client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "model/safetensors.h"
#include "tests/support/fixtures.h"
#include "tests/support/prometheus.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::Greedy;
using testing::PromptIds;

// The fixture adapters; each has greedy references under its own name.
const char* const kKinds[] = {"lora", "lora2", "road", "diablo", "seal"};

std::string FixtureAdapterDir(const std::string& kind) {
  return testing::TinyLlamaDir() + "/adapters/" + kind;
}

std::vector<int32_t> Ids(const google::protobuf::RepeatedField<int32_t>& f) { return {f.begin(), f.end()}; }

// Greedy request for fixture prompt p, first n tokens.
v1::GenerateRequest GreedyRequest(int p, const std::string& adapter, int n = 16) {
  v1::GenerateRequest r;
  for (int32_t id : PromptIds(p)) r.mutable_token_ids()->add_ids(id);
  r.set_adapter_id(adapter);
  r.mutable_sampling()->set_max_new_tokens(n);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

std::vector<int32_t> Prefix(std::vector<int32_t> v, int n) {
  v.resize(n);
  return v;
}

v1::UploadMetadata Meta(const std::string& name, bool shared = false) {
  v1::UploadMetadata m;
  m.set_name(name);
  m.set_visibility(shared ? v1::VISIBILITY_SHARED : v1::VISIBILITY_PRIVATE);
  return m;
}

std::map<std::string, double> Scrape(const testing::ServerProcess& server) {
  httplib::Client http("127.0.0.1", server.metrics_port());
  auto res = http.Get("/metrics");
  EXPECT_TRUE(res && res->status == 200);
  if (!res) return {};
  auto parsed = testing::ParsePrometheusText(res->body);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << res->body;
  return parsed.ok() ? *parsed : std::map<std::string, double>{};
}

double Metric(const testing::ServerProcess& server, const std::string& name,
              const std::map<std::string, std::string>& labels = {}) {
  return testing::SumSeries(Scrape(server), name, labels);
}

// Waits until the metric reaches want (the scheduler frees asynchronously).
bool WaitMetric(const testing::ServerProcess& server, const std::string& name, double want) {
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (absl::Now() < end) {
    if (Metric(server, name) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::vector<std::string> StoreEntries(const std::string& data_dir, const std::string& sub) {
  std::vector<std::string> out;
  if (!fs::exists(data_dir + "/" + sub)) return out;
  for (const auto& e : fs::directory_iterator(data_dir + "/" + sub))
    out.push_back(e.path().filename().string());
  return out;
}

// The folder under DATA/adapters/ of the stored entry whose
// adapter_config.json contains `text`; empty when none does.
std::string StoredEntryDir(const std::string& data_dir, const std::string& text) {
  std::string found;
  for (const auto& e : fs::directory_iterator(data_dir + "/adapters")) {
    if (testing::ReadFileOrDie(e.path().string() + "/adapter_config.json").find(text) != std::string::npos) {
      found = e.path().string();
    }
  }
  return found;
}

std::unique_ptr<TesseraClient> ConnectOrDie(const testing::ServerProcess& server,
                                            const std::string& key = "") {
  auto c = TesseraClient::Connect(server.address(), absl::Seconds(10), key);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// --- One server with a store, shared by the tests that do not restart it ---

class AdapterServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new testing::TempDir();
    server_ = testing::ServerProcess::Start(
                  testing::TinyLlamaModelDir(),
                  {"--data-dir", data_->path(), "--max-batch-size", "16", "--max-upload-mb", "1"})
                  .release();
    ASSERT_NE(server_, nullptr);
    client_ = ConnectOrDie(*server_).release();
    // Eight adapters: every fixture kind, and three second copies.
    for (int i = 0; i < 8; ++i) {
      const std::string kind = kKinds[i % 5];
      const std::string name = absl::StrCat(kind, "-", i);
      auto info = client_->UploadAdapter(FixtureAdapterDir(kind), Meta(name));
      ASSERT_TRUE(info.ok()) << info.status();
      names_.push_back({name, kind});
    }
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete data_;
  }

  static testing::TempDir* data_;
  static testing::ServerProcess* server_;
  static TesseraClient* client_;
  static std::vector<std::pair<std::string, std::string>> names_;  // name, fixture kind
};
testing::TempDir* AdapterServingTest::data_ = nullptr;
testing::ServerProcess* AdapterServingTest::server_ = nullptr;
TesseraClient* AdapterServingTest::client_ = nullptr;
std::vector<std::pair<std::string, std::string>> AdapterServingTest::names_;

TEST_F(AdapterServingTest, UploadedAdaptersAreDescribedAndListed) {
  auto info = client_->GetAdapter("lora-0");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->owner(), "local");
  EXPECT_EQ(info->reference(), "local/lora-0");
  EXPECT_EQ(info->kind(), "lora");
  EXPECT_EQ(info->rank(), 8u);
  const std::string config = testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_config.json");
  const std::string model = testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_model.safetensors");
  EXPECT_EQ(info->sha256(), Sha256Hex(config + model));
  EXPECT_EQ(info->stored_bytes(), config.size() + model.size());
  EXPECT_EQ(info->config_json(), config);
  EXPECT_EQ(info->visibility(), v1::VISIBILITY_PRIVATE);
  EXPECT_GT(info->resident_bytes(), 0u);
  EXPECT_EQ(client_->GetAdapter("diablo-3")->kind(), "diablo");
  EXPECT_EQ(client_->GetAdapter("road-2")->kind(), "road");
  EXPECT_EQ(client_->GetAdapter("road-2")->rank(), 0u);

  auto list = client_->ListAdapters();
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> refs;
  for (const auto& a : list->adapters()) refs.push_back(a.reference());
  for (const auto& [name, kind] : names_) {
    EXPECT_NE(std::find(refs.begin(), refs.end(), "local/" + name), refs.end()) << name;
  }
  EXPECT_TRUE(std::is_sorted(refs.begin(), refs.end()));
}

TEST_F(AdapterServingTest, SixtyFourConcurrentStreamsOverEightAdaptersMatchTheirReferences) {
  struct Outcome {
    absl::Status status;
    std::vector<int32_t> tokens;
  };
  std::vector<Outcome> outcomes(64);
  std::vector<std::thread> threads;
  for (int i = 0; i < 64; ++i) {
    threads.emplace_back([&, i] {
      const int p = i % 6;
      // 8 adapters and the base model, interleaved.
      const std::string adapter = i % 9 == 8 ? "" : names_[i % 9].first;
      outcomes[i].status = client_->GenerateStream(GreedyRequest(p, adapter), [&](const auto& m) {
        outcomes[i].tokens.insert(outcomes[i].tokens.end(), m.token_ids().begin(), m.token_ids().end());
      });
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 64; ++i) {
    const int p = i % 6;
    const std::string variant = i % 9 == 8 ? "base" : names_[i % 9].second;
    ASSERT_TRUE(outcomes[i].status.ok()) << i << ": " << outcomes[i].status;
    EXPECT_EQ(outcomes[i].tokens, Greedy(variant, p))
        << "stream " << i << " (" << variant << ", prompt " << p << ")";
  }
}

TEST_F(AdapterServingTest, CancellingMidStreamReturnsTheKvBlocksAtOnce) {
  ASSERT_TRUE(WaitMetric(*server_, "tessera_kv_blocks_used", 0));
  auto stub = v1::Inference::NewStub(client_->channel());
  grpc::ClientContext ctx;
  v1::GenerateRequest req = GreedyRequest(1, "lora-0");
  req.mutable_sampling()->set_max_new_tokens(200);
  auto reader = stub->GenerateStream(&ctx, req);
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_GT(Metric(*server_, "tessera_kv_blocks_used"), 0);
  EXPECT_EQ(client_->GetAdapter("lora-0")->state(), v1::ADAPTER_STATE_PINNED);
  ctx.TryCancel();
  while (reader->Read(&m)) {
  }
  reader->Finish();
  EXPECT_TRUE(WaitMetric(*server_, "tessera_kv_blocks_used", 0));
  EXPECT_TRUE(WaitMetric(*server_, "tessera_num_requests_running", 0));
  EXPECT_EQ(client_->GetAdapter("lora-0")->state(), v1::ADAPTER_STATE_RESIDENT);  // pin released
}

TEST_F(AdapterServingTest, MetricsParseAndCountersMove) {
  const auto before = Scrape(*server_);
  auto r = client_->Generate(GreedyRequest(0, "road-2", 4));
  ASSERT_TRUE(r.ok()) << r.status();
  auto bad = client_->GetAdapter("no-such-adapter");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  const auto after = Scrape(*server_);
  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    return testing::SumSeries(after, name, labels) - testing::SumSeries(before, name, labels);
  };
  EXPECT_EQ(delta("tessera_requests_total", {{"rpc", "tessera.v1.Inference/Generate"}, {"code", "OK"}}), 1);
  EXPECT_EQ(
      delta("tessera_requests_total", {{"rpc", "tessera.v1.Adapters/GetAdapter"}, {"code", "NOT_FOUND"}}), 1);
  EXPECT_EQ(delta("tessera_generation_tokens_total", {{"tenant", "local"}}), 4);
  EXPECT_EQ(delta("tessera_prompt_tokens_total", {{"tenant", "local"}}), PromptIds(0).size());
  EXPECT_EQ(delta("tessera_time_to_first_token_seconds_count", {}), 1);
  EXPECT_EQ(delta("tessera_inter_token_latency_seconds_count", {}), 3);
  EXPECT_EQ(delta("tessera_request_queue_seconds_count", {}), 1);
  EXPECT_EQ(testing::SumSeries(after, "tessera_adapters_stored", {}), 8);
  EXPECT_GE(testing::SumSeries(after, "tessera_adapter_loads_total", {{"result", "ok"}}), 1);
  EXPECT_GE(testing::SumSeries(after, "tessera_adapters_resident", {}), 1);
  EXPECT_EQ(testing::SumSeries(after, "tessera_num_requests_waiting", {}), 0);
  EXPECT_GT(testing::SumSeries(after, "tessera_kv_blocks_capacity", {}), 0);
}

TEST_F(AdapterServingTest, PrefetchMakesAnAdapterResident) {
  // diablo-3 may already be resident from an earlier test; evictions are not
  // expected with the default budget, so prefetch leaves it resident.
  auto info = client_->PrefetchAdapter("diablo-3");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->state(), v1::ADAPTER_STATE_RESIDENT);
}

TEST_F(AdapterServingTest, DeleteRemovesTheAdapterButARunningRequestKeepsItsVersion) {
  ASSERT_TRUE(client_->UploadAdapter(FixtureAdapterDir("lora"), Meta("short-lived")).ok());
  // A long stream pins the adapter; delete it mid-stream, then re-upload the
  // name with different weights: the stream still gets the original tokens.
  v1::GenerateRequest req = GreedyRequest(2, "short-lived");
  std::vector<int32_t> tokens;
  std::atomic<int> messages{0};
  absl::Status deleted, reuploaded;
  absl::Status s = client_->GenerateStream(req, [&](const v1::GenerateStreamResponse& m) {
    tokens.insert(tokens.end(), m.token_ids().begin(), m.token_ids().end());
    if (messages.fetch_add(1) == 0) {
      deleted = client_->DeleteAdapter("short-lived");
      reuploaded = client_->UploadAdapter(FixtureAdapterDir("road"), Meta("short-lived")).status();
    }
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(deleted.ok()) << deleted;
  EXPECT_TRUE(reuploaded.ok()) << reuploaded;
  EXPECT_EQ(tokens, Greedy("lora", 2));
  auto after = client_->Generate(GreedyRequest(2, "short-lived"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Ids(after->token_ids()), Greedy("road", 2));  // the new version
  ASSERT_TRUE(client_->DeleteAdapter("short-lived").ok());
  EXPECT_EQ(client_->GetAdapter("short-lived").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Generate(GreedyRequest(2, "short-lived")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->DeleteAdapter("short-lived").code(), absl::StatusCode::kNotFound);
}

// --- Malformed uploads: a clear error and nothing left in the store ---

v1::UploadAdapterRequest MetaMsg(const std::string& name) {
  v1::UploadAdapterRequest m;
  *m.mutable_metadata() = Meta(name);
  return m;
}
v1::UploadAdapterRequest Chunk(const std::string& file, const std::string& data) {
  v1::UploadAdapterRequest m;
  m.mutable_chunk()->set_file(file);
  m.mutable_chunk()->set_data(data);
  return m;
}
v1::UploadAdapterRequest ShaMsg(const std::string& hex) {
  v1::UploadAdapterRequest m;
  m.set_sha256(hex);
  return m;
}
std::vector<v1::UploadAdapterRequest> Upload(const std::string& name, const std::string& config,
                                             const std::string& model, std::optional<std::string> sha = {}) {
  return {MetaMsg(name), Chunk("adapter_config.json", config), Chunk("adapter_model.safetensors", model),
          ShaMsg(sha ? *sha : Sha256Hex(config + model))};
}

// A LoRA adapter whose q_proj B matrix has 32 output rows instead of 64.
std::string WrongShapeModel(const testing::TempDir& tmp) {
  std::vector<TensorToWrite> t(2);
  t[0].name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  t[0].shape = {8, 64};
  t[1].name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
  t[1].shape = {32, 8};
  for (auto& x : t) x.data.assign(x.shape[0] * x.shape[1] * sizeof(float), 0);
  EXPECT_TRUE(WriteSafetensors(tmp.Join("wrong.safetensors"), t).ok());
  return testing::ReadFileOrDie(tmp.Join("wrong.safetensors"));
}

TEST_F(AdapterServingTest, MalformedUploadsGetClearErrorsAndLeaveNothingBehind) {
  const std::string config = testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_config.json");
  const std::string model = testing::ReadFileOrDie(FixtureAdapterDir("lora") + "/adapter_model.safetensors");
  testing::TempDir tmp;
  const auto list_before = client_->ListAdapters()->adapters_size();
  const auto dirs_before = StoreEntries(data_->path(), "adapters");

  std::string flipped = model;
  flipped[flipped.size() / 2] ^= 0x5a;
  std::string garbage_header = model;
  garbage_header[10] = '!';
  struct Case {
    std::string what;
    std::vector<v1::UploadAdapterRequest> messages;
    absl::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases = {
      {"corrupt safetensors", Upload("bad1", config, garbage_header), absl::StatusCode::kInvalidArgument,
       "adapter rejected"},
      {"truncated safetensors", Upload("bad2", config, model.substr(0, model.size() - 100)),
       absl::StatusCode::kInvalidArgument, "adapter rejected"},
      {"shape mismatch with the base", Upload("bad3", config, WrongShapeModel(tmp)),
       absl::StatusCode::kInvalidArgument, "shape"},
      {"over the size cap", Upload("bad4", config, std::string(1100 * 1024, 'x')),
       absl::StatusCode::kResourceExhausted, "MiB"},
      {"bad sha256", Upload("bad5", config, model, Sha256Hex("something else")), absl::StatusCode::kDataLoss,
       "sha256 mismatch"},
      {"bytes changed in transit", Upload("bad6", config, flipped, Sha256Hex(config + model)),
       absl::StatusCode::kDataLoss, "sha256 mismatch"},
      {"name with a slash", Upload("team/bad", config, model), absl::StatusCode::kInvalidArgument, "'/'"},
      {"name ..", Upload("..", config, model), absl::StatusCode::kInvalidArgument, "not valid"},
      {"model before config",
       {MetaMsg("bad7"), Chunk("adapter_model.safetensors", model), Chunk("adapter_config.json", config)},
       absl::StatusCode::kInvalidArgument,
       "adapter_config.json"},
      {"unknown file",
       {MetaMsg("bad8"), Chunk("../../etc/passwd", "x")},
       absl::StatusCode::kInvalidArgument,
       "adapter_model.safetensors"},
      {"no metadata", {Chunk("adapter_config.json", config)}, absl::StatusCode::kInvalidArgument, "metadata"},
      {"stream ends before the sha256",
       {MetaMsg("bad9"), Chunk("adapter_config.json", config), Chunk("adapter_model.safetensors", model)},
       absl::StatusCode::kInvalidArgument,
       "ended before the final sha256"},
      {"missing model file",
       {MetaMsg("bad10"), Chunk("adapter_config.json", config), ShaMsg(Sha256Hex(config))},
       absl::StatusCode::kInvalidArgument,
       "needs both"},
      {"kind mismatch",
       [&] {
         auto m = Upload("bad11", config, model);
         m[0].mutable_metadata()->set_kind("road");
         return m;
       }(),
       absl::StatusCode::kInvalidArgument, "kind 'road'"},
      {"existing name", Upload("lora-0", config, model), absl::StatusCode::kAlreadyExists, "already exists"},
  };
  for (const Case& c : cases) {
    auto r = client_->UploadAdapterRaw(c.messages);
    EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status();
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << c.what << ": " << r.status();
  }
  // A stream cut mid-way (the client dies).
  auto cut = client_->UploadAdapterRaw({MetaMsg("bad12"), Chunk("adapter_config.json", config),
                                        Chunk("adapter_model.safetensors", model.substr(0, 1000))},
                                       /*half_close=*/false);
  EXPECT_FALSE(cut.ok());

  EXPECT_EQ(client_->ListAdapters()->adapters_size(), list_before);
  EXPECT_EQ(StoreEntries(data_->path(), "adapters"), dirs_before);
  // Staging is cleaned when each upload ends; the cut one may take a moment.
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (!StoreEntries(data_->path(), "staging").empty() && absl::Now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(StoreEntries(data_->path(), "staging").empty());
  // The server keeps serving.
  auto ok = client_->Generate(GreedyRequest(0, "lora-0", 4));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Ids(ok->token_ids()), Prefix(Greedy("lora", 0), 4));
}

// --- Queue limits: deadlines and a full queue ---

TEST(AdmissionTest, DeadlineShorterThanTheQueueWaitAndAFullQueue) {
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(),
      {"--max-batch-size", "1", "--max-queue", "8", "--testing-step-delay", "5ms"});
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie(*server);
  // Long requests: one runs in the only batch slot, the others queue.
  std::vector<std::thread> longs;
  struct Joiner {
    std::vector<std::thread>* threads;
    ~Joiner() {
      for (auto& t : *threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{&longs};
  std::atomic<int> long_failures{0};
  // Requests that reached the scheduler: waiting, or admitted (each admission
  // records one queue time). Moving from the queue into the batch keeps it.
  auto arrived = [&] {
    const auto m = Scrape(*server);
    return testing::SumSeries(m, "tessera_num_requests_waiting", {}) +
           testing::SumSeries(m, "tessera_request_queue_seconds_count", {});
  };
  auto wait_arrived = [&](double n) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      if (arrived() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
  };
  auto start_long = [&] {
    longs.emplace_back([&] {
      if (!client->Generate(GreedyRequest(0, "", 100)).ok()) long_failures.fetch_add(1);
    });
  };
  auto wait_queue = [&](double n) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      if (Metric(*server, "tessera_num_requests_waiting") >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
  };
  for (int i = 0; i < 7; ++i) start_long();
  ASSERT_TRUE(wait_queue(6));

  // Queued behind 6 x 100 steps of at least 5 ms each, with a 200 ms deadline.
  auto late = client->Generate(GreedyRequest(1, "", 4), absl::Milliseconds(200));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();

  // Fill the queue (8 waiting), one request at a time: the next request is
  // refused with a hint. Each long request holds the batch for 0.5 s or more,
  // so the queue does not move while the test fills it.
  ASSERT_TRUE(wait_arrived(static_cast<double>(longs.size())));  // the expired request is gone
  while (Metric(*server, "tessera_num_requests_waiting") < 8) {
    start_long();
    ASSERT_TRUE(wait_arrived(static_cast<double>(longs.size())));
  }
  auto full = client->Generate(GreedyRequest(2, "", 4));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted) << full.status();
  EXPECT_NE(full.status().message().find("queue is full"), std::string::npos) << full.status();
  EXPECT_NE(full.status().message().find("retry"), std::string::npos) << full.status();

  for (auto& t : longs) t.join();
  EXPECT_EQ(long_failures.load(), 0);
  // Nothing leaked: every block is back, nothing queued or running, and the
  // expired request never produced a token.
  EXPECT_TRUE(WaitMetric(*server, "tessera_kv_blocks_used", 0));
  EXPECT_TRUE(WaitMetric(*server, "tessera_num_requests_running", 0));
  EXPECT_EQ(Metric(*server, "tessera_num_requests_waiting"), 0);
  const auto m = Scrape(*server);
  EXPECT_EQ(testing::SumSeries(m, "tessera_generation_tokens_total", {}), longs.size() * 100.0);
  EXPECT_EQ(testing::SumSeries(m, "tessera_requests_total", {{"code", "RESOURCE_EXHAUSTED"}}), 1);
}

TEST(KvCacheFlagsTest, BytesAndMemoryFractionSetTheCapacity) {
  // The fixture model: 2 layers x 2 KV heads x 16 dims x K and V x 4 bytes =
  // 512 bytes per token; 256 KiB is 512 tokens, 32 blocks of 16.
  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--kv-cache-bytes", "262144"});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Metric(*server, "tessera_kv_blocks_capacity"), 32);
  auto fraction =
      testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--kv-cache-memory-fraction", "0.001"});
  ASSERT_NE(fraction, nullptr);
  EXPECT_GT(Metric(*fraction, "tessera_kv_blocks_capacity"), 32);
  auto r = testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model",
                                testing::TinyLlamaModelDir(), "--kv-cache-bytes", "100"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("holds no token; one token needs 512 bytes"), std::string::npos) << r.output;
  // By default: 0.3 of the memory available, never more than --max-batch-size
  // (here 3) full contexts of 256 tokens: 3 x 16 blocks of 16.
  auto capped = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--max-batch-size", "3"});
  ASSERT_NE(capped, nullptr);
  EXPECT_EQ(Metric(*capped, "tessera_kv_blocks_capacity"), 3 * 16);
  auto tiny = testing::RunCommand({testing::BinaryPath("server/tessera-server"), "--insecure-no-auth", "--model",
                                   testing::TinyLlamaModelDir(), "--kv-cache-memory-fraction", "1e-9"});
  EXPECT_EQ(tiny.exit_code, 1);
  EXPECT_NE(tiny.output.find("the KV cache cannot hold one full context"), std::string::npos) << tiny.output;
}

// --- Durability ---

TEST(AdapterStoreRestartTest, EveryAcknowledgedAdapterComesBackAndATruncatedOneIsQuarantined) {
  testing::TempDir data;
  std::map<std::string, std::string> sha;  // name -> sha256
  {
    auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--data-dir", data.path()});
    ASSERT_NE(server, nullptr);
    auto client = ConnectOrDie(*server);
    for (const char* kind : kKinds) {
      auto info = client->UploadAdapter(FixtureAdapterDir(kind), Meta(kind, /*shared=*/kind[0] == 'r'));
      ASSERT_TRUE(info.ok()) << info.status();
      sha[kind] = info->sha256();
    }
    server->process().Signal(SIGKILL);  // no graceful shutdown: acknowledged means durable
    server->process().Wait(absl::Seconds(10));
  }
  {
    auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--data-dir", data.path()});
    ASSERT_NE(server, nullptr);
    auto client = ConnectOrDie(*server);
    auto list = client->ListAdapters();
    ASSERT_TRUE(list.ok()) << list.status();
    ASSERT_EQ(list->adapters_size(), 5);
    for (const auto& a : list->adapters()) {
      EXPECT_EQ(a.sha256(), sha[a.name()]) << a.name();
      EXPECT_EQ(a.visibility(), a.name()[0] == 'r' ? v1::VISIBILITY_SHARED : v1::VISIBILITY_PRIVATE);
    }
    for (const char* kind : kKinds) {
      auto r = client->Generate(GreedyRequest(3, kind));
      ASSERT_TRUE(r.ok()) << kind << ": " << r.status();
      EXPECT_EQ(Ids(r->token_ids()), Greedy(kind, 3)) << kind;
    }
  }
  // Truncate one entry's weights by hand: it is quarantined, the rest load.
  const std::string victim_dir = StoredEntryDir(data.path(), "\"ROAD\"");
  ASSERT_FALSE(victim_dir.empty());
  const std::string weights = testing::ReadFileOrDie(victim_dir + "/adapter_model.safetensors");
  testing::WriteFileOrDie(victim_dir + "/adapter_model.safetensors", weights.substr(0, weights.size() / 2));
  {
    auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--data-dir", data.path()});
    ASSERT_NE(server, nullptr);
    auto client = ConnectOrDie(*server);
    auto list = client->ListAdapters();
    ASSERT_TRUE(list.ok()) << list.status();
    EXPECT_EQ(list->adapters_size(), 4);
    EXPECT_EQ(client->GetAdapter("road").status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(StoreEntries(data.path(), "quarantine").size(), 1u);
    EXPECT_NE(server->Log().find("quarantine"), std::string::npos) << server->Log();
    for (const char* kind : {"lora", "lora2", "diablo", "seal"}) {
      auto r = client->Generate(GreedyRequest(4, kind));
      ASSERT_TRUE(r.ok()) << kind << ": " << r.status();
      EXPECT_EQ(Ids(r->token_ids()), Greedy(kind, 4)) << kind;
    }
  }
}

// --- Eviction storm ---

// Prefetch from the queue: a request that waits for a seat in the batch has
// its adapter loaded meanwhile, not once the seat frees.
TEST(QueuePrefetchTest, AQueuedRequestsAdapterLoadsWhileTheBatchIsFull) {
  testing::TempDir data;
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(),
      {"--data-dir", data.path(), "--max-batch-size", "1", "--testing-step-delay", "40ms"});
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie(*server);
  ASSERT_TRUE(client->UploadAdapter(FixtureAdapterDir("lora"), Meta("busy")).ok());
  ASSERT_TRUE(client->UploadAdapter(FixtureAdapterDir("diablo"), Meta("queued")).ok());
  std::atomic<bool> first_token{false}, busy_done{false};
  std::thread busy([&] {
    absl::Status s = client->GenerateStream(GreedyRequest(0, "busy", 40), [&](const v1::GenerateStreamResponse& m) {
      if (m.token_ids_size() > 0) first_token = true;
    });
    EXPECT_TRUE(s.ok()) << s;
    busy_done = true;
  });
  while (!first_token && !busy_done) absl::SleepFor(absl::Milliseconds(5));
  std::thread queued([&] {
    auto r = client->Generate(GreedyRequest(1, "queued", 2));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(Ids(r->token_ids()), Prefix(Greedy("diablo", 1), 2));
  });
  bool resident_while_busy = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!busy_done && absl::Now() < deadline) {
    auto info = client->GetAdapter("queued");
    if (info.ok() && info->state() == v1::ADAPTER_STATE_RESIDENT) {
      resident_while_busy = !busy_done;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(resident_while_busy) << "the queued request's adapter loaded only after the batch seat freed";
  busy.join();
  queued.join();
}

// Cache loads trust the stored files (their sizes are checked, not their
// sha256); the scrub re-reads them. A byte changed on disk after upload, the
// size kept, is found by the scrub, quarantined and never served again, not
// even from the resident copy.
TEST(AdapterScrubTest, AFileChangedOnDiskAfterUploadIsQuarantinedAndNeverServedAgain) {
  testing::TempDir data;
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(),
      {"--data-dir", data.path(), "--adapter-scrub-mb-per-s", "1000", "--adapter-scrub-interval", "50ms"});
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie(*server);
  for (const char* kind : {"lora", "diablo"}) {
    ASSERT_TRUE(client->UploadAdapter(FixtureAdapterDir(kind), Meta(kind)).ok()) << kind;
    auto r = client->Generate(GreedyRequest(3, kind));
    ASSERT_TRUE(r.ok()) << kind << ": " << r.status();
    EXPECT_EQ(Ids(r->token_ids()), Greedy(kind, 3)) << kind;
  }
  const std::string victim_dir = StoredEntryDir(data.path(), "\"LORA\"");
  ASSERT_FALSE(victim_dir.empty());
  std::string weights = testing::ReadFileOrDie(victim_dir + "/adapter_model.safetensors");
  weights[weights.size() - 3] ^= 0x01;  // the low bits of one value: still a finite number
  testing::WriteFileOrDie(victim_dir + "/adapter_model.safetensors", weights);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (StoreEntries(data.path(), "quarantine").empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(StoreEntries(data.path(), "quarantine").size(), 1u) << server->Log();
  EXPECT_NE(server->Log().find("sha256-mismatch"), std::string::npos) << server->Log();
  auto r = client->Generate(GreedyRequest(3, "lora"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_EQ(client->GetAdapter("lora").status().code(), absl::StatusCode::kNotFound);
  auto other = client->Generate(GreedyRequest(3, "diablo"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(Ids(other->token_ids()), Greedy("diablo", 3));
}

TEST(EvictionStormTest, TwoAdapterBudgetTwentyAdaptersFiveHundredRequestsNoMismatch) {
  // Twenty adapters of one resident size (copies of the two rank-8 LoRA
  // fixtures, which have different weights), and a pool of two slots.
  const char* const kStormKinds[] = {"lora", "seal"};
  testing::TempDir data;
  int64_t largest = 0, smallest = std::numeric_limits<int64_t>::max();
  {
    auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--data-dir", data.path()});
    ASSERT_NE(server, nullptr);
    auto client = ConnectOrDie(*server);
    for (int i = 0; i < 20; ++i) {
      auto info = client->UploadAdapter(FixtureAdapterDir(kStormKinds[i % 2]), Meta(absl::StrCat("a", i)));
      ASSERT_TRUE(info.ok()) << info.status();
      largest = std::max<int64_t>(largest, info->resident_bytes());
      smallest = std::min<int64_t>(smallest, info->resident_bytes());
    }
  }
  ASSERT_EQ(largest, smallest);
  // Restart with room for two adapters only.
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(), {"--data-dir", data.path(), "--adapter-slots", "2", "--max-batch-size", "8"});
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie(*server);
  std::vector<int> order(500);
  for (int i = 0; i < 500; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(1234));
  std::atomic<int> next{0}, mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 16; ++w) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < 500;) {
        const int a = order[i] % 20, p = order[i] % 6;
        auto r = client->Generate(GreedyRequest(p, absl::StrCat("a", a), 3));
        if (!r.ok()) {
          ADD_FAILURE() << "request " << i << ": " << r.status();
          failures.fetch_add(1);
        } else if (Ids(r->token_ids()) != Prefix(Greedy(kStormKinds[a % 2], p), 3)) {
          mismatches.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  const auto m = Scrape(*server);
  EXPECT_GT(testing::SumSeries(m, "tessera_adapter_evictions_total", {}), 0);
  EXPECT_LE(testing::SumSeries(m, "tessera_adapter_resident_bytes", {}), 2.0 * largest);
  EXPECT_LE(testing::SumSeries(m, "tessera_adapters_resident", {}), 2);
  EXPECT_EQ(testing::SumSeries(m, "tessera_adapter_slots", {}), 2);
  EXPECT_GE(testing::SumSeries(m, "tessera_adapter_loads_total", {{"result", "ok"}}), 20);
  EXPECT_TRUE(WaitMetric(*server, "tessera_kv_blocks_used", 0));
}

// --- Tenants ---

class TenantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteFileOrDie(dir_.Join("tenants.json"),
                            absl::StrCat(R"({"tenants": [
      {"id": "acme", "role": "user", "api_key_sha256": ")",
                                         Sha256Hex("key-a"), R"("},
      {"id": "globex", "role": "user", "api_key_sha256": ")",
                                         Sha256Hex("key-b"), R"(", "max_adapters": 1},
      {"id": "ops", "role": "admin", "api_key_sha256": ")",
                                         Sha256Hex("key-admin"), R"("}]})"));
    server_ = testing::ServerProcess::Start(
        testing::TinyLlamaModelDir(),
        {"--data-dir", dir_.Join("data"), "--tenants", dir_.Join("tenants.json"), "--max-uploads-per-tenant", "32"});
    ASSERT_NE(server_, nullptr);
    a_ = ConnectOrDie(*server_, "key-a");
    b_ = ConnectOrDie(*server_, "key-b");
    admin_ = ConnectOrDie(*server_, "key-admin");
  }
  testing::TempDir dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<TesseraClient> a_, b_, admin_;
};

TEST_F(TenantTest, CallsWithoutAValidKeyAreUnauthenticated) {
  auto none = ConnectOrDie(*server_);
  auto wrong = ConnectOrDie(*server_, "not-a-key");
  for (TesseraClient* c : {none.get(), wrong.get()}) {
    EXPECT_EQ(c->Generate(GreedyRequest(0, "", 2)).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->ListAdapters().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->ServerInfo().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->Tokenize("Once", false).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->Detokenize({1, 2}, false).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->UploadAdapter(FixtureAdapterDir("lora"), Meta("x")).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  EXPECT_NE(none->ListAdapters().status().message().find("authorization: Bearer"), std::string::npos);
  EXPECT_TRUE(a_->Generate(GreedyRequest(0, "", 2)).ok());
}

TEST_F(TenantTest, CrossTenantMatrix) {
  ASSERT_TRUE(a_->UploadAdapter(FixtureAdapterDir("lora"), Meta("private-one")).ok());
  ASSERT_TRUE(a_->UploadAdapter(FixtureAdapterDir("road"), Meta("shared-one", /*shared=*/true)).ok());
  const std::string unknown = "adapter 'acme/private-one' is not loaded";

  // B and A's private adapter: every call denied, as if it did not exist.
  auto use = b_->Generate(GreedyRequest(0, "acme/private-one", 2));
  EXPECT_EQ(use.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(use.status().message().find(unknown), std::string::npos) << use.status();
  auto never = b_->Generate(GreedyRequest(0, "acme/never-existed", 2));
  EXPECT_EQ(never.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b_->GetAdapter("acme/private-one").status().code(), absl::StatusCode::kNotFound);
  // The same messages as for an adapter that never existed.
  const auto same_as_missing = [&](const absl::Status& real, const absl::Status& missing) {
    EXPECT_EQ(std::string(real.message()),
              absl::StrReplaceAll(std::string(missing.message()), {{"never-existed", "private-one"}}));
  };
  same_as_missing(b_->GetAdapter("acme/private-one").status(), b_->GetAdapter("acme/never-existed").status());
  same_as_missing(use.status(), never.status());
  EXPECT_EQ(b_->DeleteAdapter("acme/private-one").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b_->PrefetchAdapter("acme/private-one").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b_->Generate(GreedyRequest(0, "private-one", 2)).status().code(), absl::StatusCode::kNotFound);
  auto b_list = b_->ListAdapters();
  ASSERT_TRUE(b_list.ok());
  EXPECT_EQ(b_list->adapters_size(), 0);

  // The shared flag allows use, and nothing more.
  auto shared = b_->Generate(GreedyRequest(1, "acme/shared-one"));
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(Ids(shared->token_ids()), Greedy("road", 1));
  EXPECT_EQ(b_->GetAdapter("acme/shared-one").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(b_->DeleteAdapter("acme/shared-one").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(b_->PrefetchAdapter("acme/shared-one").status().code(), absl::StatusCode::kPermissionDenied);

  // The owner and the admin may do everything; A's calls still work.
  auto mine = a_->Generate(GreedyRequest(1, "private-one"));
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(Ids(mine->token_ids()), Greedy("lora", 1));
  EXPECT_EQ(a_->ListAdapters()->adapters_size(), 2);
  EXPECT_EQ(admin_->ListAdapters()->adapters_size(), 2);
  EXPECT_TRUE(admin_->GetAdapter("acme/private-one").ok());
  EXPECT_TRUE(admin_->Generate(GreedyRequest(1, "acme/private-one", 2)).ok());
  EXPECT_TRUE(admin_->PrefetchAdapter("acme/private-one").ok());

  // Each tenant has its own namespace: B may use the same name.
  ASSERT_TRUE(b_->UploadAdapter(FixtureAdapterDir("diablo"), Meta("private-one")).ok());
  auto bs = b_->Generate(GreedyRequest(1, "private-one"));
  ASSERT_TRUE(bs.ok()) << bs.status();
  EXPECT_EQ(Ids(bs->token_ids()), Greedy("diablo", 1));
  // B's quota is one adapter.
  auto over = b_->UploadAdapter(FixtureAdapterDir("lora2"), Meta("second"));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_NE(over.status().message().find("quota"), std::string::npos) << over.status();

  EXPECT_TRUE(admin_->DeleteAdapter("acme/private-one").ok());
  EXPECT_EQ(a_->GetAdapter("private-one").status().code(), absl::StatusCode::kNotFound);
}

// Twelve uploads race against globex's quota of one adapter: exactly one is
// stored, every other one is refused for the quota, and the store agrees.
TEST_F(TenantTest, UploadQuotaHoldsUnderRacingUploads) {
  constexpr int kRacers = 12;
  std::vector<std::thread> racers;
  std::vector<absl::Status> results(kRacers);
  std::atomic<int> go{0};
  for (int i = 0; i < kRacers; ++i) {
    racers.emplace_back([&, i] {
      auto c = ConnectOrDie(*server_, "key-b");
      go.fetch_add(1);
      while (go.load() < kRacers) std::this_thread::yield();
      results[i] = c->UploadAdapter(FixtureAdapterDir(kKinds[i % 5]), Meta(absl::StrCat("racer-", i))).status();
    });
  }
  for (auto& t : racers) t.join();
  int stored = 0;
  for (const absl::Status& s : results) {
    if (s.ok()) {
      ++stored;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
      EXPECT_NE(s.message().find("quota"), std::string::npos) << s;
    }
  }
  EXPECT_EQ(stored, 1);
  auto list = b_->ListAdapters();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->adapters_size(), 1);
  EXPECT_TRUE(fs::is_empty(dir_.Join("data/staging")));
}

// Every RPC that names an adapter or a credential, called by another tenant,
// by a tenant guessing references and store ids, and without a valid key:
// each call is denied with its code, and a denial for something that exists
// reads exactly like one for something that does not.
TEST_F(TenantTest, IsolationMatrixOverEveryRpcThatNamesAnAdapterOrCredential) {
  auto info = a_->UploadAdapter(FixtureAdapterDir("seal"), Meta("secret-one"));
  ASSERT_TRUE(info.ok()) << info.status();
  auto files = TesseraClient::ReadCredentialFiles(testing::TinyLlamaDir() + "/owner_secret/passport.safetensors",
                                                  testing::TinyLlamaDir() + "/owner_secret/original_lora.safetensors");
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_TRUE(a_->RegisterWatermark("cred-a", *files).ok());
  std::string store_id;  // the store's own id of A's adapter, as an attacker might guess it
  for (const auto& e : fs::directory_iterator(dir_.Join("data/adapters"))) store_id = e.path().filename().string();
  ASSERT_FALSE(store_id.empty());
  auto none = ConnectOrDie(*server_);
  auto wrong = ConnectOrDie(*server_, "not-a-key");

  struct Call {
    std::string what;
    std::function<absl::Status(TesseraClient&, const std::string& ref)> run;
  };
  const std::vector<Call> calls = {
      {"Generate", [](TesseraClient& c, const std::string& ref) { return c.Generate(GreedyRequest(0, ref, 2)).status(); }},
      {"GenerateStream",
       [](TesseraClient& c, const std::string& ref) {
         return c.GenerateStream(GreedyRequest(0, ref, 2), [](const v1::GenerateStreamResponse&) {});
       }},
      {"GetAdapter", [](TesseraClient& c, const std::string& ref) { return c.GetAdapter(ref).status(); }},
      {"DeleteAdapter", [](TesseraClient& c, const std::string& ref) { return c.DeleteAdapter(ref); }},
      {"PrefetchAdapter", [](TesseraClient& c, const std::string& ref) { return c.PrefetchAdapter(ref).status(); }},
      {"VerifyOwnership(adapter)",
       [](TesseraClient& c, const std::string& ref) {
         v1::VerifyOwnershipRequest v;
         v.set_adapter_id(ref);
         v.set_credential_id("cred-b-none");
         return c.VerifyOwnership(v).status();
       }},
  };
  int cases = 0, denied = 0;
  auto expect_denied = [&](const absl::Status& s, std::initializer_list<absl::StatusCode> codes, const std::string& label) {
    ++cases;
    bool ok = false;
    for (absl::StatusCode c : codes) ok |= s.code() == c;
    denied += ok ? 1 : 0;
    EXPECT_TRUE(ok) << label << ": " << s;
  };
  for (const Call& call : calls) {
    // Another tenant: NotFound, word for word as for a name that never existed.
    const absl::Status real = call.run(*b_, "acme/secret-one");
    const absl::Status missing = call.run(*b_, "acme/never-was");
    expect_denied(real, {absl::StatusCode::kNotFound}, call.what + " by another tenant");
    EXPECT_EQ(std::string(real.message()),
              absl::StrReplaceAll(std::string(missing.message()), {{"never-was", "secret-one"}}))
        << call.what;
    // Guessing: store ids, case, path tricks, the owner's bare name.
    for (const std::string& guess : std::vector<std::string>{"@" + store_id, "acme/@" + store_id, store_id, "ACME/secret-one",
                                     "acme/./secret-one", "../acme/secret-one", "acme//secret-one", "secret-one"}) {
      expect_denied(call.run(*b_, guess), {absl::StatusCode::kNotFound, absl::StatusCode::kInvalidArgument},
                    call.what + " guessing '" + guess + "'");
    }
    // No key, a wrong key.
    for (TesseraClient* c : {none.get(), wrong.get()}) {
      expect_denied(call.run(*c, "acme/secret-one"), {absl::StatusCode::kUnauthenticated}, call.what + " without a key");
    }
  }
  // Credentials: another tenant cannot use A's, by its id or by OWNER/ID.
  for (const std::string& cred : {"cred-a", "acme/cred-a"}) {
    v1::VerifyOwnershipRequest v;
    v.set_adapter_id("acme/secret-one");
    v.set_credential_id(cred);
    expect_denied(b_->VerifyOwnership(v).status(), {absl::StatusCode::kNotFound, absl::StatusCode::kPermissionDenied},
                  "VerifyOwnership(credential " + cred + ") by another tenant");
    expect_denied(none->VerifyOwnership(v).status(), {absl::StatusCode::kUnauthenticated},
                  "VerifyOwnership without a key");
  }
  expect_denied(none->RegisterWatermark("cred-x", *files).status(), {absl::StatusCode::kUnauthenticated},
                "RegisterWatermark without a key");
  // A registered credential claims the hosted adapter of another tenant: the
  // earlier hosted upload wins.
  auto claim = b_->RegisterWatermark("claim", *files);
  expect_denied(claim.status(), {absl::StatusCode::kPermissionDenied}, "RegisterWatermark claiming a hosted adapter");
  EXPECT_NE(claim.status().message().find("earlier hosted upload wins"), std::string::npos) << claim.status();
  EXPECT_EQ(claim.status().message().find("acme"), std::string::npos) << "the refusal names the other tenant";
  EXPECT_EQ(denied, cases);
  std::printf("isolation matrix: %d of %d calls denied with the right code\n", denied, cases);
  // Nothing changed for the owner.
  EXPECT_TRUE(a_->GetAdapter("secret-one").ok());
}

}  // namespace
}  // namespace tessera
