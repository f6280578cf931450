#include "server/serving/startup_adapters.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "model/model.h"
#include "nlohmann/json.hpp"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string AdapterDir(const std::string& name) { return testing::TinyLlamaDir() + "/adapters/" + name; }

TEST(StartupAdaptersTest, FailedAdaptersAreReportedAndOthersServe) {
  const ModelConfig config = *ModelConfig::FromFile(testing::TinyLlamaModelDir() + "/config.json");
  auto pool = *AdapterPool::Create(config, {2, 64});
  AdapterCache cache(pool.get(), AdapterCache::CopyingLoader(
                                     [](const std::string&) -> absl::StatusOr<std::shared_ptr<const Adapter>> {
                                       return absl::NotFoundError("no store");
                                     }));
  testing::TempDir dir;
  const std::string bad = dir.Join("bad");
  fs::create_directories(bad);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    fs::copy_file(AdapterDir("lora") + "/" + f, bad + "/" + f);
    fs::permissions(bad + "/" + f, fs::perms::owner_write, fs::perm_options::add);
  }
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(bad + "/adapter_config.json"));
  j["bias"] = "lora_only";
  testing::WriteFileOrDie(bad + "/adapter_config.json", j.dump());

  StartupAdapters adapters;
  EXPECT_TRUE(adapters.Load("good", AdapterDir("lora"), config, {}, cache).ok());
  EXPECT_FALSE(adapters.Load("bad", bad, config, {}, cache).ok());
  EXPECT_EQ(adapters.Load("good", AdapterDir("road"), config, {}, cache).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(adapters.Resolve("good").ok());
  EXPECT_EQ(cache.StateOf("good"), AdapterCache::State::kResident);
  EXPECT_EQ(cache.stats().free_slots, 1);  // the failed one took no slot
  absl::Status s = adapters.Resolve("bad");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("failed to load at start-up: adapter 'bad': bias 'lora_only'"), std::string::npos)
      << s;
  s = adapters.Resolve("other");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("(loaded: good)"), std::string::npos) << s;
  EXPECT_EQ(adapters.Names(), std::vector<std::string>{"good"});
  // Verification reads the files again: the cache kept only the slot's copy.
  absl::StatusOr<std::shared_ptr<const Adapter>> reread = adapters.Reload("good", config, {});
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_FALSE((*reread)->modules.empty());
  EXPECT_EQ(adapters.Reload("bad", config, {}).status().code(), absl::StatusCode::kFailedPrecondition);

  // A pool with no slot left refuses the next start-up adapter with a hint.
  s = adapters.Load("third", AdapterDir("road"), config, {}, cache);
  EXPECT_TRUE(s.ok()) << s;
  s = adapters.Load("fourth", AdapterDir("diablo"), config, {}, cache);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("raise --adapter-slots"), std::string::npos) << s;

  EXPECT_EQ(ParseAdapterSpec("a=/x")->second, "/x");
  EXPECT_FALSE(ParseAdapterSpec("=x").ok());
  EXPECT_FALSE(ParseAdapterSpec("a b=x").ok());
}

}  // namespace
}  // namespace tessera
