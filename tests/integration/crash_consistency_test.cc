// kill -9 of tessera-server at random moments while uploads stream in, then
// a restart: every upload the server acknowledged is listed with its sha256
// intact, nothing partial is ever visible, and start-up never fails.
// TESSERA_CRASH_ROUNDS sets the number of rounds (default 10; scripts/crash
// runs 100).
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/tessera_client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/support/fixtures.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

const char* const kKinds[] = {"lora", "road", "diablo", "seal"};

std::string FixtureAdapterDir(const std::string& kind) { return testing::TinyLlamaDir() + "/adapters/" + kind; }

int Rounds() {
  int rounds = 10;
  if (const char* env = std::getenv("TESSERA_CRASH_ROUNDS")) {
    if (!absl::SimpleAtoi(env, &rounds) || rounds < 1) rounds = 10;
  }
  return rounds;
}

TEST(CrashConsistencyTest, KillNineDuringUploadsLosesNothingAcknowledged) {
  std::map<std::string, std::string> kind_sha;  // what a complete upload of each kind hashes to
  for (const char* kind : kKinds) {
    kind_sha[kind] = Sha256Hex(testing::ReadFileOrDie(FixtureAdapterDir(kind) + "/adapter_config.json") +
                               testing::ReadFileOrDie(FixtureAdapterDir(kind) + "/adapter_model.safetensors"));
  }
  testing::TempDir data;
  std::mutex mu;
  std::map<std::string, std::string> acknowledged;  // name -> sha256 the server replied with
  std::mt19937 rng(20261201);
  const int rounds = Rounds();
  int64_t uploads_started = 0;
  for (int round = 0; round <= rounds; ++round) {
    auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(), {"--data-dir", data.path()});
    ASSERT_NE(server, nullptr) << "start-up failed after kill -9 number " << round;
    auto client = TesseraClient::Connect(server->address(), absl::Seconds(10));
    ASSERT_TRUE(client.ok()) << client.status();
    // Everything acknowledged so far is there, intact; everything listed is complete.
    auto list = (*client)->ListAdapters();
    ASSERT_TRUE(list.ok()) << list.status();
    std::map<std::string, std::string> listed;
    for (const v1::AdapterInfo& a : list->adapters()) listed[a.name()] = a.sha256();
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [name, sha] : acknowledged) {
        ASSERT_TRUE(listed.count(name)) << "acknowledged upload " << name << " lost after kill -9 number " << round;
        EXPECT_EQ(listed[name], sha) << name;
      }
    }
    for (const auto& [name, sha] : listed) {
      const std::vector<std::string> parts = absl::StrSplit(name, '-');
      ASSERT_EQ(parts.size(), 3u) << name;
      EXPECT_EQ(sha, kind_sha[parts[2]]) << "partial or corrupt adapter " << name << " is visible";
    }
    EXPECT_TRUE(fs::is_empty(data.Join("staging"))) << "staging not cleaned at start-up";
    if (round == rounds) break;

    // Four clients upload back to back until the server dies.
    std::atomic<bool> dead{false};
    std::vector<std::thread> uploaders;
    std::atomic<int64_t> started{0};
    for (int w = 0; w < 4; ++w) {
      uploaders.emplace_back([&, w] {
        auto c = TesseraClient::Connect(server->address(), absl::Seconds(10));
        if (!c.ok()) return;
        for (int i = 0; !dead.load(); ++i) {
          const std::string kind = kKinds[(w + i) % 4];
          v1::UploadMetadata m;
          m.set_name(absl::StrCat("r", round, "w", w, "u", i, "-", round, "-", kind));
          started.fetch_add(1);
          auto info = (*c)->UploadAdapter(FixtureAdapterDir(kind), m, nullptr, absl::Seconds(20));
          if (info.ok()) {
            std::lock_guard<std::mutex> lock(mu);
            acknowledged[m.name()] = info->sha256();
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 400)(rng)));
    server->process().Signal(SIGKILL);
    ASSERT_TRUE(server->process().Wait(absl::Seconds(10)).has_value());
    dead = true;
    for (auto& t : uploaders) t.join();
    uploads_started += started.load();
  }
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_GT(acknowledged.size(), 0u) << "no upload was ever acknowledged: the test did no work";
  EXPECT_GT(uploads_started, static_cast<int64_t>(acknowledged.size())) << "no upload was ever cut by a kill";
  std::printf("crash consistency: %d kills, %lld uploads started, %zu acknowledged, all intact\n", rounds,
              static_cast<long long>(uploads_started), acknowledged.size());
}

}  // namespace
}  // namespace tessera
