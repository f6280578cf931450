#include "adapters/adapter_cache.h"

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

// One layer, hidden 8: q is [8, 8].
ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  return c;
}

// A LoRA of `rank` on q only, every value `value`.
std::shared_ptr<const Adapter> FakeAdapter(const std::string& name, float value = 1, int32_t rank = 2) {
  auto a = std::make_shared<Adapter>();
  a->name = name;
  a->parameter_bytes = 100;
  a->num_layers = 1;
  a->modules.resize(kNumLinearModules);
  LoraModule lora;
  lora.rank = rank;
  lora.a.assign(rank * 8, value);
  lora.b.assign(8 * rank, value);
  a->modules[static_cast<int>(LinearModule::kQ)].lora = std::move(lora);
  return a;
}

std::unique_ptr<AdapterPool> Pool(int32_t slots, int32_t max_rank = 4) {
  return *AdapterPool::Create(TinyConfig(), {slots, max_rank});
}

// A loader that counts calls and can be held until released. Keys starting
// with "bad" are corrupt, "flaky" fails once, "huge" has rank 8.
class FakeLoader {
 public:
  AdapterCache::Loader loader() {
    return AdapterCache::CopyingLoader([this](const std::string& key) -> absl::StatusOr<std::shared_ptr<const Adapter>> {
      calls_.fetch_add(1);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !hold_; });
      if (key.rfind("bad", 0) == 0) return absl::DataLossError(absl::StrCat(key, " is corrupt"));
      if (key.rfind("flaky", 0) == 0 && calls_.load() == 1) return absl::UnavailableError("disk hiccup");
      if (key.rfind("huge", 0) == 0) return FakeAdapter(key, 1, 8);
      return FakeAdapter(key, static_cast<float>(key.size()));
    });
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
  EXPECT_TRUE(cache.Prefetch(key, absl::Seconds(10)).ok());
  auto pin = cache.TryPin(key);
  EXPECT_TRUE(pin.ok()) << pin.status();
  return pin.ok() ? *pin : AdapterPin();
}

TEST(AdapterCacheTest, ConcurrentFirstUsesLoadOnce) {
  FakeLoader loader;
  loader.Hold();
  auto pool = Pool(10);
  AdapterCache cache(pool.get(), loader.loader());
  std::vector<std::thread> threads;
  std::atomic<int> not_resident{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      auto pin = cache.TryPin("a");
      if (!pin.ok() && IsNotResident(pin.status())) not_resident.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(not_resident.load(), 16);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kLoading);
  loader.Release();
  ASSERT_TRUE(cache.Prefetch("a", absl::Seconds(10)).ok());
  EXPECT_EQ(loader.calls(), 1);
  EXPECT_EQ(cache.stats().loads, 1);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kResident);
}

// Want (a queued request) starts the load at once, and keeps the adapter
// from being evicted for another load until the want goes.
TEST(AdapterCacheTest, AWantStartsTheLoadAndKeepsTheAdapterUntilReleased) {
  FakeLoader loader;
  auto pool = Pool(1);
  AdapterCache cache(pool.get(), loader.loader());
  AdapterWant want = cache.Want("a");
  EXPECT_TRUE(want);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (cache.StateOf("a") != AdapterCache::State::kResident && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(cache.StateOf("a"), AdapterCache::State::kResident);  // no TryPin was needed
  EXPECT_EQ(loader.calls(), 1);
  // Unpinned but wanted: another adapter cannot take its slot.
  auto b = cache.TryPin("b");
  EXPECT_TRUE(IsNotResident(b.status())) << b.status();
  EXPECT_EQ(cache.StateOf("b"), AdapterCache::State::kAbsent);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kResident);
  EXPECT_EQ(cache.stats().evictions, 0);
  // Once the request has its pin it lets the want go; after it, a is fair game.
  {
    AdapterPin pin = PinWhenResident(cache, "a");
    want.reset();
  }
  AdapterPin pin_b = PinWhenResident(cache, "b");
  EXPECT_EQ(cache.stats().evictions, 1);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kAbsent);
  // A want whose load could not start (b is pinned in the only slot) leaves
  // nothing behind once released.
  AdapterWant c = cache.Want("c");
  EXPECT_EQ(cache.StateOf("c"), AdapterCache::State::kAbsent);
  c.reset();
  EXPECT_EQ(cache.stats().resident, 1);
  EXPECT_EQ(loader.calls(), 2);
}

TEST(AdapterCacheTest, PinnedAdaptersAreNeverEvictedAndTheSlotsHold) {
  FakeLoader loader;
  auto pool = Pool(2);
  AdapterCache cache(pool.get(), loader.loader());
  AdapterPin a = PinWhenResident(cache, "a");
  AdapterPin b = PinWhenResident(cache, "b");
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kPinned);
  EXPECT_NE(a.slot(), b.slot());
  // A third cannot start loading while both are pinned.
  auto c = cache.TryPin("c");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(IsNotResident(c.status()));
  EXPECT_EQ(cache.StateOf("c"), AdapterCache::State::kAbsent);
  EXPECT_EQ(loader.calls(), 2);
  // Releasing a makes it the LRU victim for c, which takes its slot.
  const int32_t a_slot = a.slot();
  a.reset();
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kResident);
  AdapterPin cp = PinWhenResident(cache, "c");
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kAbsent);
  EXPECT_EQ(cache.StateOf("b"), AdapterCache::State::kPinned);
  EXPECT_EQ(cache.stats().evictions, 1);
  EXPECT_EQ(cp.slot(), a_slot);
  EXPECT_EQ(cache.stats().free_slots, 0);
  EXPECT_EQ(b->name, "b");
  EXPECT_EQ(cp->name, "c");
}

TEST(AdapterCacheTest, NothingIsEvictedWhileEverySlotIsPinned) {
  FakeLoader loader;
  auto pool = Pool(2);
  AdapterCache cache(pool.get(), loader.loader());
  AdapterPin a = PinWhenResident(cache, "a");
  AdapterPin b = PinWhenResident(cache, "b");
  b.reset();  // b is evictable, a is pinned
  AdapterPin c = PinWhenResident(cache, "c");
  EXPECT_EQ(cache.StateOf("b"), AdapterCache::State::kAbsent);
  c.reset();
  AdapterPin d = PinWhenResident(cache, "d");
  EXPECT_EQ(cache.StateOf("c"), AdapterCache::State::kAbsent);
  // Both pinned: e waits, and nothing is thrown away for it.
  auto e = cache.TryPin("e");
  EXPECT_TRUE(IsNotResident(e.status()));
  EXPECT_EQ(cache.stats().evictions, 2);
  EXPECT_EQ(cache.StateOf("e"), AdapterCache::State::kAbsent);
}

TEST(AdapterCacheTest, ThePinnedSlotHoldsTheAdaptersWeightsUntilEvicted) {
  FakeLoader loader;
  auto pool = Pool(1);
  AdapterCache cache(pool.get(), loader.loader());
  AdapterPin ab = PinWhenResident(cache, "ab");  // every value 2
  ASSERT_EQ(ab.slot(), 0);
  ASSERT_EQ(pool->op_of(0), AdapterOp::kLowRank);
  const LoraSlotWeights& w = pool->lora(0, LinearModule::kQ)[0];
  ASSERT_NE(w.a, nullptr);
  EXPECT_EQ(w.rank, 2);
  EXPECT_EQ(w.a[0], 2.0f);
  EXPECT_EQ(w.b[15], 2.0f);
  EXPECT_EQ(pool->lora(0, LinearModule::kK)[0].a, nullptr);  // not targeted
  EXPECT_TRUE(ab->modules.empty());  // the cache keeps metadata; the weights are in the slot
  ab.reset();
  AdapterPin abc = PinWhenResident(cache, "abc");  // evicts ab, every value 3
  EXPECT_EQ(abc.slot(), 0);
  EXPECT_EQ(pool->lora(0, LinearModule::kQ)[0].a[0], 3.0f);
  abc.reset();
  cache.Erase("abc");
  EXPECT_FALSE(pool->op_of(0));  // a freed slot is cleared
  EXPECT_EQ(pool->lora(0, LinearModule::kQ)[0].a, nullptr);
}

TEST(AdapterCacheTest, ErasedPinnedAdapterKeepsItsSlotUntilUnpinned) {
  FakeLoader loader;
  auto pool = Pool(2);
  AdapterCache cache(pool.get(), loader.loader());
  AdapterPin a = PinWhenResident(cache, "a");
  cache.Erase("a");
  EXPECT_EQ(cache.stats().resident_bytes, 100);
  EXPECT_EQ(cache.stats().free_slots, 1);
  EXPECT_TRUE(pool->op_of(a.slot()));
  EXPECT_EQ(cache.TryPin("a").status().code(), absl::StatusCode::kNotFound);
  a.reset();
  EXPECT_EQ(cache.stats().resident_bytes, 0);
  EXPECT_EQ(cache.stats().free_slots, 2);
}

TEST(AdapterCacheTest, TransientLoadFailuresAreRetried) {
  FakeLoader loader;
  auto pool = Pool(10);
  AdapterCache cache(pool.get(), loader.loader());
  // The first load fails with a transient error; the waiter's retry loads it.
  EXPECT_TRUE(cache.Prefetch("flaky", absl::Seconds(10)).ok());
  EXPECT_EQ(loader.calls(), 2);
  EXPECT_EQ(cache.stats().load_failures, 1);
  EXPECT_EQ(cache.StateOf("flaky"), AdapterCache::State::kResident);
}

TEST(AdapterCacheTest, ErasedAdapterStaysValidForItsPinHolders) {
  FakeLoader loader;
  auto pool = Pool(10);
  AdapterCache cache(pool.get(), loader.loader());
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
  auto pool = Pool(10);
  AdapterCache cache(pool.get(), loader.loader());
  auto first = cache.TryPin("bad-1");
  EXPECT_TRUE(IsNotResident(first.status()));
  absl::Status s = cache.Prefetch("bad-1", absl::Seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(cache.TryPin("bad-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(loader.calls(), 1);
  EXPECT_EQ(cache.stats().load_failures, 1);
}

TEST(AdapterCacheTest, AnAdapterThatDoesNotFitASlotFailsItsLoadAndFreesTheSlot) {
  FakeLoader loader;
  auto pool = Pool(1, /*max_rank=*/4);
  AdapterCache cache(pool.get(), loader.loader());
  absl::Status s = cache.Prefetch("huge", absl::Seconds(10));  // rank 8
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("--max-lora-rank 4"), std::string::npos) << s;
  EXPECT_EQ(cache.stats().free_slots, 1);
  EXPECT_FALSE(pool->op_of(0));
  AdapterPin a = PinWhenResident(cache, "a");
  EXPECT_EQ(a.slot(), 0);
}

TEST(AdapterCacheTest, PermanentAdaptersKeepTheirSlots) {
  FakeLoader loader;
  auto pool = Pool(2);
  AdapterCache cache(pool.get(), loader.loader());
  ASSERT_TRUE(cache.AddPermanent("startup", FakeAdapter("startup")).ok());
  EXPECT_EQ(cache.AddPermanent("startup", FakeAdapter("startup")).code(), absl::StatusCode::kAlreadyExists);
  auto pin = cache.TryPin("startup");
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ((*pin)->name, "startup");
  const int32_t slot = pin->slot();
  pin->reset();
  AdapterPin a = PinWhenResident(cache, "a");
  a.reset();
  AdapterPin b = PinWhenResident(cache, "b");  // evicts a, never the permanent one
  EXPECT_EQ(cache.StateOf("startup"), AdapterCache::State::kResident);
  EXPECT_EQ(cache.StateOf("a"), AdapterCache::State::kAbsent);
  EXPECT_NE(b.slot(), slot);
  EXPECT_EQ(loader.calls(), 2);
  // No slot left for another permanent one.
  absl::Status full = cache.AddPermanent("second", FakeAdapter("second"));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("--adapter-slots"), std::string::npos) << full;
}

TEST(AdapterCacheTest, ListenerFiresOnLoadAndUnpin) {
  FakeLoader loader;
  auto pool = Pool(10);
  AdapterCache cache(pool.get(), loader.loader());
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
