#include "adapters/adapter_cache.h"

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

std::shared_ptr<const Adapter> FakeAdapter(const std::string& name, int64_t bytes) {
  auto a = std::make_shared<Adapter>();
  a->name = name;
  a->parameter_bytes = bytes;
  return a;
}

// A loader that counts calls and can be held until released.
class FakeLoader {
 public:
  AdapterCache::Loader loader() {
    return [this](const std::string& key) -> absl::StatusOr<std::shared_ptr<const Adapter>> {
      calls_.fetch_add(1);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !hold_; });
      if (key.rfind("bad", 0) == 0) return absl::DataLossError(absl::StrCat(key, " is corrupt"));
      if (key.rfind("flaky", 0) == 0 && calls_.load() == 1) return absl::UnavailableError("disk hiccup");
      return FakeAdapter(key, 100);
    };
  }
  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  int calls() const { return calls_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  std::atomic<int> calls_{0};
};

AdapterPin PinWhenResident(AdapterCache& cache, const std::string& key) {
  EXPECT_TRUE(cache.Prefetch(key, 100, absl::Seconds(10)).ok());
  auto pin = cache.TryPin(key, 100);
  EXPECT_TRUE(pin.ok()) << pin.status();
  return pin.ok() ? *pin : nullptr;
}

TEST(AdapterCacheTest, ConcurrentFirstUsesLoadOnce) {
  FakeLoader loader;
  loader.Hold();
  AdapterCache cache(1000, loader.loader());
  std::vector<std::thread> threads;
  std::atomic<int> not_resident{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      auto pin = cache.TryPin("a", 100);
      if (!pin.ok() && IsNotResident(pin.status())) not_resident.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(not_resident.load(), 16);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kLoading);
  loader.Release();
  ASSERT_TRUE(cache.Prefetch("a", 100, absl::Seconds(10)).ok());
  EXPECT_EQ(loader.calls(), 1);
  EXPECT_EQ(cache.stats().loads, 1);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kResident);
}

TEST(AdapterCacheTest, PinnedAdaptersAreNeverEvictedAndTheBudgetHolds) {
  FakeLoader loader;
  AdapterCache cache(200, loader.loader());  // two adapters of 100 bytes
  AdapterPin a = PinWhenResident(cache, "a");
  AdapterPin b = PinWhenResident(cache, "b");
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kPinned);
  // A third cannot start loading while both are pinned.
  auto c = cache.TryPin("c", 100);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(IsNotResident(c.status()));
  EXPECT_EQ(cache.StateOf("c"), AdapterCache::State::kAbsent);
  EXPECT_EQ(loader.calls(), 2);
  // Releasing a makes it the LRU victim for c.
  a.reset();
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kResident);
  AdapterPin cp = PinWhenResident(cache, "c");
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kAbsent);
  EXPECT_EQ(cache.StateOf("b"), AdapterCache::State::kPinned);
  EXPECT_EQ(cache.stats().evictions, 1);
  EXPECT_LE(cache.stats().resident_bytes, 200);
  EXPECT_EQ(b->name, "b");
  EXPECT_EQ(cp->name, "c");
}

TEST(AdapterCacheTest, NoEvictionWhenItCannotMakeEnoughRoom) {
  FakeLoader loader;
  AdapterCache cache(250, loader.loader());  // 2.5 adapters of 100 bytes
  AdapterPin a = PinWhenResident(cache, "a");
  AdapterPin b = PinWhenResident(cache, "b");
  b.reset();  // b is evictable, a is pinned
  // c fits after evicting b: evicted.
  AdapterPin c = PinWhenResident(cache, "c");
  EXPECT_EQ(cache.StateOf("b"), AdapterCache::State::kAbsent);
  c.reset();
  // With a pinned and only c evictable, d fits (a + d = 200): c goes.
  AdapterPin d = PinWhenResident(cache, "d");
  EXPECT_EQ(cache.StateOf("c"), AdapterCache::State::kAbsent);
  // Both pinned: e does not fit, and nothing unpinned is thrown away for it.
  auto e = cache.TryPin("e", 100);
  EXPECT_TRUE(IsNotResident(e.status()));
  EXPECT_EQ(cache.stats().evictions, 2);
  EXPECT_EQ(cache.StateOf("e"), AdapterCache::State::kAbsent);
}

TEST(AdapterCacheTest, ErasedPinnedAdapterKeepsItsBytesCountedUntilUnpinned) {
  FakeLoader loader;
  AdapterCache cache(200, loader.loader());
  AdapterPin a = PinWhenResident(cache, "a");
  cache.Erase("a");
  EXPECT_EQ(cache.stats().resident_bytes, 100);
  EXPECT_EQ(cache.TryPin("a", 100).status().code(), absl::StatusCode::kNotFound);
  a.reset();
  EXPECT_EQ(cache.stats().resident_bytes, 0);
}

TEST(AdapterCacheTest, TransientLoadFailuresAreRetried) {
  FakeLoader loader;
  AdapterCache cache(1000, loader.loader());
  // The first load fails with a transient error; the waiter's retry loads it.
  EXPECT_TRUE(cache.Prefetch("flaky", 100, absl::Seconds(10)).ok());
  EXPECT_EQ(loader.calls(), 2);
  EXPECT_EQ(cache.stats().load_failures, 1);
  EXPECT_EQ(cache.StateOf("flaky"), AdapterCache::State::kResident);
}

TEST(AdapterCacheTest, ErasedAdapterStaysValidForItsPinHolders) {
  FakeLoader loader;
  AdapterCache cache(1000, loader.loader());
  AdapterPin a = PinWhenResident(cache, "a");
  cache.Erase("a");
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kAbsent);
  EXPECT_EQ(a->name, "a");  // the request's copy is untouched
  EXPECT_EQ(a->parameter_bytes, 100);
  a.reset();  // releasing a pin of an erased entry is harmless
  EXPECT_EQ(cache.stats().resident_bytes, 0);
}

TEST(AdapterCacheTest, FailedLoadIsReportedToEveryWaiter) {
  FakeLoader loader;
  AdapterCache cache(1000, loader.loader());
  auto first = cache.TryPin("bad-1", 100);
  EXPECT_TRUE(IsNotResident(first.status()));
  absl::Status s = cache.Prefetch("bad-1", 100, absl::Seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(cache.TryPin("bad-1", 100).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(loader.calls(), 1);
  EXPECT_EQ(cache.stats().load_failures, 1);
}

TEST(AdapterCacheTest, TooLargeForTheBudgetIsResourceExhausted) {
  FakeLoader loader;
  AdapterCache cache(50, loader.loader());
  auto pin = cache.TryPin("a", 100);
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(pin.status().message().find("--adapter-cache-mb"), std::string::npos) << pin.status();
  EXPECT_EQ(loader.calls(), 0);
}

TEST(AdapterCacheTest, PermanentAdaptersAreAlwaysResident) {
  FakeLoader loader;
  AdapterCache cache(100, loader.loader());
  cache.AddPermanent("startup", FakeAdapter("startup", 1000));
  auto pin = cache.TryPin("startup", 1000);
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ((*pin)->name, "startup");
  pin->reset();
  AdapterPin a = PinWhenResident(cache, "a");  // the budget ignores permanent ones
  EXPECT_EQ(cache.StateOf("startup"), AdapterCache::State::kResident);
  EXPECT_EQ(loader.calls(), 1);
}

TEST(AdapterCacheTest, ListenerFiresOnLoadAndUnpin) {
  FakeLoader loader;
  AdapterCache cache(1000, loader.loader());
  std::atomic<int> fired{0};
  cache.SetListener([&] { fired.fetch_add(1); });
  AdapterPin a = PinWhenResident(cache, "a");
  const int after_load = fired.load();
  EXPECT_GE(after_load, 1);
  a.reset();
  EXPECT_GT(fired.load(), after_load);
  cache.SetListener(nullptr);
}

}  // namespace
}  // namespace tessera
