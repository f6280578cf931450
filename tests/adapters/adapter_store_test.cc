#include "adapters/adapter_store.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "adapters/adapter_scrubber.h"
#include "common/mutex.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMiB = int64_t{1} << 20;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

void ExpectSameEntry(const StoredAdapter& a, const StoredAdapter& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.owner, b.owner);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.shared, b.shared);
  EXPECT_EQ(a.sha256, b.sha256);
  EXPECT_EQ(a.config_bytes, b.config_bytes);
  EXPECT_EQ(a.model_bytes, b.model_bytes);
  EXPECT_EQ(a.resident_bytes, b.resident_bytes);
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(a.created_unix_ms, b.created_unix_ms);
}

class AdapterStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / ("adapter_store_test_" + std::string(info->name()) + "_" +
                                             std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<AdapterStore> OpenStore() {
    absl::StatusOr<std::unique_ptr<AdapterStore>> store = AdapterStore::Open(dir_.string());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static StoredAdapter Meta(const std::string& owner, const std::string& name) {
    StoredAdapter meta;
    meta.owner = owner;
    meta.name = name;
    meta.kind = "lora";
    meta.description = "adapter " + name + " of " + owner + " with \"quotes\" and ünïcode";
    meta.shared = name.size() % 2 == 0;
    meta.resident_bytes = 4096 + static_cast<int64_t>(name.size());
    meta.rank = 8;
    return meta;
  }

  static std::string Config(const std::string& name) {
    return R"({"peft_type":"LORA","r":8,"name":")" + name + "\"}";
  }
  static std::string Model(const std::string& name) {
    std::string model(3000 + name.size() * 101, '\0');
    for (size_t i = 0; i < model.size(); ++i) model[i] = static_cast<char>(i * 31 + name[i % name.size()]);
    return model;
  }

  // Uploads Config(name) and Model(name) in several chunks and commits them.
  static absl::StatusOr<StoredAdapter> Store(AdapterStore& store, const std::string& owner,
                                             const std::string& name) {
    absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = store.BeginUpload(16 * kMiB);
    if (!upload.ok()) return upload.status();
    const std::string config = Config(name);
    const std::string model = Model(name);
    for (size_t i = 0; i < config.size(); i += 10) {
      absl::Status s = (*upload)->Append(kAdapterConfigFile, std::string_view(config).substr(i, 10));
      if (!s.ok()) return s;
    }
    for (size_t i = 0; i < model.size(); i += 1000) {
      absl::Status s = (*upload)->Append(kAdapterModelFile, std::string_view(model).substr(i, 1000));
      if (!s.ok()) return s;
    }
    return store.Commit(*std::move(upload), Meta(owner, name));
  }

  fs::path dir_;
};

TEST_F(AdapterStoreTest, CommitFillsEntryAndReopenReturnsIdenticalEntries) {
  std::vector<StoredAdapter> stored;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->List().empty());
    for (const auto& [owner, name] : std::vector<std::pair<std::string, std::string>>{
             {"bob", "zeta"}, {"alice", "beta"}, {"alice", "alpha"}}) {
      absl::StatusOr<StoredAdapter> entry = Store(*store, owner, name);
      ASSERT_TRUE(entry.ok()) << entry.status();
      EXPECT_FALSE(entry->id.empty());
      EXPECT_EQ(entry->owner, owner);
      EXPECT_EQ(entry->name, name);
      EXPECT_EQ(entry->kind, "lora");
      EXPECT_EQ(entry->rank, 8);
      EXPECT_EQ(entry->description, Meta(owner, name).description);
      EXPECT_EQ(entry->config_bytes, static_cast<int64_t>(Config(name).size()));
      EXPECT_EQ(entry->model_bytes, static_cast<int64_t>(Model(name).size()));
      EXPECT_EQ(entry->sha256, Sha256Hex(Config(name) + Model(name)));
      EXPECT_GT(entry->created_unix_ms, 1600000000000);
      stored.push_back(*entry);
    }
    EXPECT_NE(stored[0].id, stored[1].id);
    EXPECT_NE(stored[1].id, stored[2].id);
    int64_t count = 0, bytes = 0;
    store->Usage("alice", &count, &bytes);
    EXPECT_EQ(count, 2);
    EXPECT_EQ(bytes, stored[1].stored_bytes() + stored[2].stored_bytes());
    store->Usage("nobody", &count, &bytes);
    EXPECT_EQ(count, 0);
    EXPECT_EQ(bytes, 0);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->quarantined(), 0);
  std::vector<StoredAdapter> listed = store->List();
  ASSERT_EQ(listed.size(), 3u);
  // Sorted by reference: alice/alpha, alice/beta, bob/zeta.
  ExpectSameEntry(listed[0], stored[2]);
  ExpectSameEntry(listed[1], stored[1]);
  ExpectSameEntry(listed[2], stored[0]);
  std::optional<StoredAdapter> found = store->Find("bob", "zeta");
  ASSERT_TRUE(found.has_value());
  ExpectSameEntry(*found, stored[0]);
  EXPECT_FALSE(store->Find("alice", "zeta").has_value());
  EXPECT_TRUE(store->Verify(stored[0]).ok());
}

TEST_F(AdapterStoreTest, CommittedFilesAreInPlaceWithTheUploadedBytes) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = store->BeginUpload(kMiB);
  ASSERT_TRUE(upload.ok()) << upload.status();
  const std::string staging = (*upload)->dir();
  EXPECT_TRUE(fs::is_directory(staging));
  EXPECT_EQ(fs::path(staging).parent_path(), dir_ / "staging");
  ASSERT_TRUE((*upload)->Append(kAdapterConfigFile, "{\"r\":").ok());
  ASSERT_TRUE((*upload)->Append(kAdapterConfigFile, "4}").ok());
  EXPECT_TRUE((*upload)->has_config());
  EXPECT_FALSE((*upload)->has_model());
  ASSERT_TRUE((*upload)->Append(kAdapterModelFile, "tensor-bytes").ok());
  EXPECT_EQ((*upload)->bytes(), 7 + 12);
  EXPECT_EQ((*upload)->Sha256Hex(), Sha256Hex("{\"r\":4}tensor-bytes"));
  EXPECT_EQ(ReadFile(fs::path(staging) / kAdapterConfigFile), "{\"r\":4}");

  absl::StatusOr<StoredAdapter> entry = store->Commit(*std::move(upload), Meta("alice", "tiny"));
  ASSERT_TRUE(entry.ok()) << entry.status();
  const fs::path path = store->PathOf(*entry);
  EXPECT_EQ(path, dir_ / "adapters" / entry->id);
  EXPECT_EQ(ReadFile(path / kAdapterConfigFile), "{\"r\":4}");
  EXPECT_EQ(ReadFile(path / kAdapterModelFile), "tensor-bytes");
  EXPECT_EQ(entry->sha256, Sha256Hex("{\"r\":4}tensor-bytes"));
  EXPECT_FALSE(fs::exists(staging));
  EXPECT_TRUE(fs::is_empty(dir_ / "staging"));
  EXPECT_FALSE(fs::exists(dir_ / "manifest.json.tmp"));

  nlohmann::json manifest = nlohmann::json::parse(ReadFile(dir_ / "manifest.json"));
  EXPECT_EQ(manifest["version"], 1);
  ASSERT_EQ(manifest["adapters"].size(), 1u);
  EXPECT_EQ(manifest["adapters"][0]["id"], entry->id);
  EXPECT_EQ(manifest["adapters"][0]["owner"], "alice");
  EXPECT_EQ(manifest["adapters"][0]["sha256"], entry->sha256);
  EXPECT_EQ(manifest["adapters"][0]["model_bytes"], 12);
  // The id counter in the manifest is past the id used.
  uint64_t used = 0;
  ASSERT_TRUE(absl::SimpleAtoi(entry->id.substr(0, entry->id.find('-')), &used)) << entry->id;
  EXPECT_GT(manifest["next_id"].get<uint64_t>(), used);
}

TEST_F(AdapterStoreTest, DuplicateNameOfSameOwnerIsAlreadyExistsOtherOwnerIsFine) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Store(*store, "alice", "lora1").ok());
  absl::StatusOr<StoredAdapter> again = Store(*store, "alice", "lora1");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Contains(again.status().message(), "alice/lora1")) << again.status();
  EXPECT_TRUE(Contains(again.status().message(), "delete it first")) << again.status();
  EXPECT_TRUE(fs::is_empty(dir_ / "staging"));
  EXPECT_EQ(Names(dir_ / "adapters").size(), 1u);

  absl::StatusOr<StoredAdapter> other = Store(*store, "bob", "lora1");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(store->List().size(), 2u);
}

TEST_F(AdapterStoreTest, RemoveThenReopenIsGoneAndIdsAreNotReused) {
  std::string removed_id;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    absl::StatusOr<StoredAdapter> a = Store(*store, "alice", "a");
    absl::StatusOr<StoredAdapter> b = Store(*store, "alice", "b");
    ASSERT_TRUE(a.ok() && b.ok());
    removed_id = a->id;
    ASSERT_TRUE(store->Remove("alice", "a").ok());
    EXPECT_FALSE(fs::exists(store->PathOf(*a)));
    EXPECT_FALSE(store->Find("alice", "a").has_value());
    absl::Status again = store->Remove("alice", "a");
    EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(Contains(again.message(), "alice/a")) << again;
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->quarantined(), 0);
  EXPECT_FALSE(store->Find("alice", "a").has_value());
  ASSERT_TRUE(store->Find("alice", "b").has_value());
  EXPECT_EQ(Names(dir_ / "adapters"), std::vector<std::string>{store->Find("alice", "b")->id});
  absl::StatusOr<StoredAdapter> a2 = Store(*store, "alice", "a");
  ASSERT_TRUE(a2.ok()) << a2.status();
  EXPECT_NE(a2->id, removed_id);
}

TEST_F(AdapterStoreTest, DroppedUploadLeavesStagingEmptyAndOpenWipesStaging) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  {
    absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = store->BeginUpload(kMiB);
    ASSERT_TRUE(upload.ok()) << upload.status();
    ASSERT_TRUE((*upload)->Append(kAdapterConfigFile, "{}").ok());
    ASSERT_TRUE((*upload)->Append(kAdapterModelFile, "partial").ok());
    EXPECT_TRUE(fs::exists(fs::path((*upload)->dir()) / kAdapterModelFile));
  }
  EXPECT_TRUE(fs::is_empty(dir_ / "staging"));
  EXPECT_TRUE(fs::is_empty(dir_ / "adapters"));
  EXPECT_TRUE(store->List().empty());

  // Leftovers of a crash during an upload disappear at the next Open.
  store.reset();
  fs::create_directories(dir_ / "staging" / "000042-abcdef");
  WriteFile(dir_ / "staging" / "000042-abcdef" / kAdapterModelFile, "half");
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::is_empty(dir_ / "staging"));
  EXPECT_EQ(store->quarantined(), 0);
}

TEST_F(AdapterStoreTest, TruncatedFileQuarantinesOnlyThatEntry) {
  StoredAdapter broken;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(Store(*store, "alice", "one").ok());
    absl::StatusOr<StoredAdapter> two = Store(*store, "alice", "two");
    ASSERT_TRUE(two.ok());
    broken = *two;
    ASSERT_TRUE(Store(*store, "bob", "three").ok());
  }
  const fs::path model = dir_ / "adapters" / broken.id / kAdapterModelFile;
  fs::resize_file(model, fs::file_size(model) - 1);

  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->quarantined(), 1);
    EXPECT_TRUE(store->Find("alice", "one").has_value());
    EXPECT_TRUE(store->Find("bob", "three").has_value());
    EXPECT_FALSE(store->Find("alice", "two").has_value());
    EXPECT_EQ(store->List().size(), 2u);
    EXPECT_FALSE(fs::exists(dir_ / "adapters" / broken.id));
    const std::vector<std::string> quarantined = Names(dir_ / "quarantine");
    ASSERT_EQ(quarantined.size(), 1u);
    EXPECT_EQ(quarantined[0], broken.id + "-size-mismatch");
    const fs::path kept = dir_ / "quarantine" / quarantined[0];
    EXPECT_EQ(fs::file_size(kept / kAdapterModelFile), static_cast<uintmax_t>(broken.model_bytes - 1));
    EXPECT_EQ(ReadFile(kept / kAdapterConfigFile), Config("two"));
    nlohmann::json meta = nlohmann::json::parse(ReadFile(kept / "stored_adapter.json"));
    EXPECT_EQ(meta["owner"], "alice");
    EXPECT_EQ(meta["name"], "two");
  }
  // The manifest was rewritten: nothing more to quarantine.
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->quarantined(), 0);
  EXPECT_EQ(store->List().size(), 2u);
}

TEST_F(AdapterStoreTest, EntryWithMissingDirectoryIsDropped) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    absl::StatusOr<StoredAdapter> a = Store(*store, "alice", "gone");
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(Store(*store, "alice", "kept").ok());
    fs::remove_all(store->PathOf(*a));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->quarantined(), 1);
  EXPECT_FALSE(store->Find("alice", "gone").has_value());
  EXPECT_TRUE(store->Find("alice", "kept").has_value());
}

TEST_F(AdapterStoreTest, UnlistedDirectoryIsQuarantinedAndItsIdNotReused) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(Store(*store, "alice", "listed").ok());
  }
  // As after a crash between the rename into adapters/ and the manifest write.
  fs::create_directories(dir_ / "adapters" / "000099-abcdef");
  WriteFile(dir_ / "adapters" / "000099-abcdef" / kAdapterModelFile, "orphan");

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->quarantined(), 1);
  EXPECT_EQ(store->List().size(), 1u);
  EXPECT_FALSE(fs::exists(dir_ / "adapters" / "000099-abcdef"));
  EXPECT_EQ(ReadFile(dir_ / "quarantine" / "000099-abcdef-unlisted" / kAdapterModelFile), "orphan");
  absl::StatusOr<StoredAdapter> next = Store(*store, "alice", "next");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->id.substr(0, 7), "000100-") << next->id;
}

TEST_F(AdapterStoreTest, GarbageManifestOpensEmptyAndKeepsTheGarbage) {
  std::string id;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    absl::StatusOr<StoredAdapter> a = Store(*store, "alice", "a");
    ASSERT_TRUE(a.ok());
    id = a->id;
  }
  WriteFile(dir_ / "manifest.json", "{\"version\": 1, \"adapters\": [ garbage");

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->List().empty());
  bool found_manifest = false;
  for (const std::string& name : Names(dir_ / "quarantine")) {
    if (name.rfind("manifest-", 0) == 0) {
      found_manifest = true;
      EXPECT_EQ(ReadFile(dir_ / "quarantine" / name), "{\"version\": 1, \"adapters\": [ garbage");
    }
  }
  EXPECT_TRUE(found_manifest);
  // The files it named are kept in quarantine too, and a valid manifest replaces it.
  EXPECT_TRUE(fs::exists(dir_ / "quarantine" / (id + "-unlisted") / kAdapterModelFile));
  EXPECT_TRUE(fs::is_empty(dir_ / "adapters"));
  nlohmann::json manifest = nlohmann::json::parse(ReadFile(dir_ / "manifest.json"));
  EXPECT_TRUE(manifest["adapters"].empty());
  ASSERT_TRUE(Store(*store, "alice", "a").ok());
}

TEST_F(AdapterStoreTest, VerifyDetectsSameSizeByteFlipAndQuarantines) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredAdapter> entry = Store(*store, "alice", "flip");
  ASSERT_TRUE(entry.ok());
  ASSERT_TRUE(Store(*store, "alice", "fine").ok());
  EXPECT_TRUE(store->Verify(*entry).ok());

  const fs::path model = fs::path(store->PathOf(*entry)) / kAdapterModelFile;
  std::string bytes = ReadFile(model);
  bytes[bytes.size() / 2] ^= 0x01;
  WriteFile(model, bytes);
  ASSERT_EQ(fs::file_size(model), static_cast<uintmax_t>(entry->model_bytes));
  // A size check (what every cache load does) cannot see it; the scrub's
  // full check does.
  EXPECT_TRUE(store->Verify(*entry, AdapterStore::VerifyMode::kSizes).ok());

  absl::Status status = store->Verify(*entry);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "alice/flip")) << status;
  EXPECT_TRUE(Contains(status.message(), "quarantined")) << status;
  EXPECT_EQ(store->quarantined(), 1);
  EXPECT_FALSE(store->Find("alice", "flip").has_value());
  EXPECT_TRUE(fs::exists(dir_ / "quarantine" / (entry->id + "-sha256-mismatch") / kAdapterModelFile));
  EXPECT_EQ(store->Verify(*entry).code(), absl::StatusCode::kNotFound);

  store.reset();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->Find("alice", "flip").has_value());
  EXPECT_TRUE(store->Find("alice", "fine").has_value());
  EXPECT_EQ(store->quarantined(), 0);
}

TEST_F(AdapterStoreTest, SizeCheckQuarantinesAFileOfAnotherSize) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredAdapter> entry = Store(*store, "alice", "short");
  ASSERT_TRUE(entry.ok());
  const fs::path model = fs::path(store->PathOf(*entry)) / kAdapterModelFile;
  WriteFile(model, ReadFile(model) + "x");
  absl::Status status = store->Verify(*entry, AdapterStore::VerifyMode::kSizes);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_TRUE(Contains(status.message(), "manifest.json records")) << status;
  EXPECT_TRUE(fs::exists(dir_ / "quarantine" / (entry->id + "-size-mismatch") / kAdapterModelFile));
  EXPECT_FALSE(store->Find("alice", "short").has_value());
}

// The scrubber finds a same-size change, quarantines the entry, tells its
// callback, leaves the others alone, and paces its reads.
TEST_F(AdapterStoreTest, ScrubberQuarantinesAChangedEntryAndPacesItsReads) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredAdapter> bad = Store(*store, "alice", "bad");
  ASSERT_TRUE(bad.ok());
  ASSERT_TRUE(Store(*store, "alice", "good").ok());
  const fs::path model = fs::path(store->PathOf(*bad)) / kAdapterModelFile;
  std::string bytes = ReadFile(model);
  bytes[1] ^= 0x40;
  WriteFile(model, bytes);
  Mutex mu;
  std::vector<std::string> told;
  {
    AdapterScrubber scrubber(store.get(), {int64_t{1} << 30, absl::Milliseconds(10)},
                             [&](const StoredAdapter& e) {
                               MutexLock lock(&mu);
                               told.push_back(e.reference());
                             });
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (scrubber.stats().passes < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    const AdapterScrubber::Stats stats = scrubber.stats();
    EXPECT_GE(stats.passes, 2);
    EXPECT_EQ(stats.quarantined, 1);
    EXPECT_GE(stats.verified, 3);  // both in the first pass, the good one again after
  }
  EXPECT_EQ(told, std::vector<std::string>{"alice/bad"});
  EXPECT_FALSE(store->Find("alice", "bad").has_value());
  EXPECT_TRUE(store->Find("alice", "good").has_value());

  // 1 KiB/s over a few KiB: still reading when it is destroyed, which is
  // prompt all the same.
  const absl::Time start = absl::Now();
  {
    AdapterScrubber slow(store.get(), {1024, absl::Hours(1)}, nullptr);
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_EQ(slow.stats().passes, 0);
    EXPECT_LE(slow.stats().bytes, 1024 + 65536);
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(AdapterStoreTest, AppendEnforcesFileNamesAndOrder) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = store->BeginUpload(kMiB);
  ASSERT_TRUE(upload.ok());
  AdapterUpload& u = **upload;

  absl::Status unknown = u.Append("weights.bin", "x");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(unknown.message(), "weights.bin")) << unknown;
  EXPECT_TRUE(Contains(unknown.message(), kAdapterConfigFile)) << unknown;
  EXPECT_TRUE(Contains(unknown.message(), kAdapterModelFile)) << unknown;

  // Empty chunks are ignored, whatever the file.
  EXPECT_TRUE(u.Append(kAdapterModelFile, "").ok());
  EXPECT_TRUE(u.Append(kAdapterConfigFile, "").ok());
  EXPECT_EQ(u.bytes(), 0);

  absl::Status model_first = u.Append(kAdapterModelFile, "m");
  EXPECT_EQ(model_first.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(model_first.message(), "before")) << model_first;

  ASSERT_TRUE(u.Append(kAdapterConfigFile, "{}").ok());
  ASSERT_TRUE(u.Append(kAdapterModelFile, "m").ok());
  absl::Status config_again = u.Append(kAdapterConfigFile, "{}");
  EXPECT_EQ(config_again.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(config_again.message(), "after")) << config_again;
  EXPECT_TRUE(u.Append(kAdapterModelFile, "m2").ok());
  EXPECT_EQ(u.bytes(), 2 + 3);
  EXPECT_EQ(ReadFile(fs::path(u.dir()) / kAdapterConfigFile), "{}");
  EXPECT_EQ(ReadFile(fs::path(u.dir()) / kAdapterModelFile), "mm2");
  EXPECT_EQ(u.Sha256Hex(), Sha256Hex("{}mm2"));
}

TEST_F(AdapterStoreTest, AppendEnforcesTheSizeCap) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = store->BeginUpload(kMiB);
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Append(kAdapterConfigFile, std::string(1000, 'c')).ok());
  ASSERT_TRUE((*upload)->Append(kAdapterModelFile, std::string(kMiB - 1000, 'm')).ok());
  EXPECT_EQ((*upload)->bytes(), kMiB);
  absl::Status over = (*upload)->Append(kAdapterModelFile, "x");
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(over.message(), "1 MiB")) << over;
  EXPECT_TRUE(Contains(over.message(), "smaller adapter")) << over;
  EXPECT_EQ((*upload)->bytes(), kMiB);
  EXPECT_EQ(fs::file_size(fs::path((*upload)->dir()) / kAdapterModelFile),
            static_cast<uintmax_t>(kMiB - 1000));

  // The upload is still whole and can be committed.
  absl::StatusOr<StoredAdapter> entry = store->Commit(*std::move(upload), Meta("alice", "big"));
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->stored_bytes(), kMiB);
}

TEST_F(AdapterStoreTest, CommitNeedsBothFiles) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = store->BeginUpload(kMiB);
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Append(kAdapterConfigFile, "{}").ok());
  absl::StatusOr<StoredAdapter> entry = store->Commit(*std::move(upload), Meta("alice", "half"));
  ASSERT_FALSE(entry.ok());
  EXPECT_EQ(entry.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(entry.status().message(), kAdapterModelFile)) << entry.status();
  EXPECT_TRUE(store->List().empty());
  EXPECT_TRUE(fs::is_empty(dir_ / "staging"));
  EXPECT_TRUE(fs::is_empty(dir_ / "adapters"));
}

TEST_F(AdapterStoreTest, CommitLeavesNothingWhenTheManifestCannotBeWritten) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Store(*store, "alice", "before").ok());
  // A directory in the way of manifest.json.tmp makes the manifest write fail.
  fs::create_directories(dir_ / "manifest.json.tmp" / "blocker");
  absl::StatusOr<StoredAdapter> entry = Store(*store, "alice", "after");
  ASSERT_FALSE(entry.ok());
  EXPECT_TRUE(Contains(entry.status().message(), "alice/after")) << entry.status();
  EXPECT_TRUE(Contains(entry.status().message(), "was not stored")) << entry.status();
  EXPECT_FALSE(store->Find("alice", "after").has_value());
  EXPECT_EQ(Names(dir_ / "adapters").size(), 1u);
  EXPECT_TRUE(fs::is_empty(dir_ / "staging"));
  absl::Status remove = store->Remove("alice", "before");
  EXPECT_FALSE(remove.ok());
  EXPECT_TRUE(store->Find("alice", "before").has_value());

  fs::remove_all(dir_ / "manifest.json.tmp");
  store.reset();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->quarantined(), 0);
  ASSERT_EQ(store->List().size(), 1u);
  EXPECT_EQ(store->List()[0].name, "before");
}

TEST_F(AdapterStoreTest, NewerManifestVersionIsRefused) {
  fs::create_directories(dir_);
  WriteFile(dir_ / "manifest.json", R"({"version": 2, "next_id": 1, "adapters": []})");
  absl::StatusOr<std::unique_ptr<AdapterStore>> store = AdapterStore::Open(dir_.string());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(store.status().message(), "version 2")) << store.status();
  EXPECT_EQ(ReadFile(dir_ / "manifest.json"), R"({"version": 2, "next_id": 1, "adapters": []})");
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

TEST(AdapterStoreLockTest, OneProcessPerStoreDirectory) {
  const std::string dir = ::testing::TempDir() + "/store-lock-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  {
    auto first = AdapterStore::Open(dir);
    ASSERT_TRUE(first.ok()) << first.status();
    auto second = AdapterStore::Open(dir);
    EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
    EXPECT_NE(second.status().message().find("its own --data-dir"), std::string::npos) << second.status();
  }
  EXPECT_TRUE(AdapterStore::Open(dir).ok());  // released with the first store
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera
