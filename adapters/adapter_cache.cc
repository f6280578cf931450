#include "adapters/adapter_cache.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

constexpr char kNotResidentPayload[] = "type.tessera.dev/adapter-not-resident";

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

bool IsNotResident(const absl::Status& status) { return status.GetPayload(kNotResidentPayload).has_value(); }

AdapterCache::AdapterCache(int64_t budget_bytes, Loader loader, Observer observer)
    : budget_(budget_bytes), loader_(std::move(loader)), observer_(std::move(observer)) {
  counters_.budget_bytes = budget_;
  thread_ = std::thread([this] { LoaderLoop(); });
}

AdapterCache::~AdapterCache() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  thread_.join();
}

void AdapterCache::SetListener(std::function<void()> listener) {
  MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

void AdapterCache::Notify() {
  std::function<void()> listener;
  {
    MutexLock lock(&mu_);
    listener = listener_;
  }
  if (listener) listener();
}

void AdapterCache::AddPermanent(const std::string& key, std::shared_ptr<const Adapter> adapter) {
  MutexLock lock(&mu_);
  Entry& e = entries_[key];
  e.adapter = std::move(adapter);
  e.bytes = e.adapter->parameter_bytes;
  e.permanent = true;
}

AdapterPin AdapterCache::PinLocked(const std::string& key, Entry& e) {
  if (e.in_lru) {
    lru_.erase(e.lru);
    e.in_lru = false;
  }
  ++e.pins;
  // The token keeps the adapter alive even if the entry is erased or evicted;
  // its deleter releases the pin.
  struct Token {
    std::shared_ptr<const Adapter> adapter;
  };
  auto* token = new Token{e.adapter};
  std::shared_ptr<Token> owner(token, [this, key](Token* t) {
    delete t;
    Unpin(key);
  });
  return AdapterPin(owner, owner->adapter.get());
}

void AdapterCache::Unpin(const std::string& key) {
  {
    MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.pins > 0) {
      Entry& e = it->second;
      if (--e.pins == 0 && e.erased) {
        resident_bytes_ -= e.bytes;
        entries_.erase(it);
      } else if (e.pins == 0 && !e.permanent && e.adapter) {
        e.lru = lru_.insert(lru_.end(), key);
        e.in_lru = true;
      }
    }
    cv_.SignalAll();
  }
  Notify();
}

bool AdapterCache::MakeRoom(int64_t needed) {
  // Evict only when that makes enough room: evicting and still failing would
  // throw away adapters that queued requests are about to pin (thrashing).
  int64_t evictable = 0;
  for (const std::string& key : lru_) evictable += entries_.at(key).bytes;
  if (resident_bytes_ - evictable + loading_bytes_ + needed > budget_) return false;
  while (resident_bytes_ + loading_bytes_ + needed > budget_ && !lru_.empty()) {
    const std::string victim = lru_.front();
    lru_.pop_front();
    auto it = entries_.find(victim);
    resident_bytes_ -= it->second.bytes;
    spdlog::info("adapter cache: evicted {} ({:.1f} MiB)", victim, MiB(it->second.bytes));
    entries_.erase(it);
    ++counters_.evictions;
    if (observer_.on_evict) observer_.on_evict();
  }
  return resident_bytes_ + loading_bytes_ + needed <= budget_;
}

absl::StatusOr<AdapterPin> AdapterCache::TryPin(const std::string& key, int64_t size_bytes) {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    Entry& e = it->second;
    if (e.erased) {
      return absl::NotFoundError("the adapter was deleted before the request could start; upload it again");
    }
    if (e.adapter) return PinLocked(key, e);
    if (!e.error.ok()) return e.error;
    if (e.loading) {
      absl::Status s = absl::UnavailableError(absl::StrCat("adapter ", key, " is loading"));
      s.SetPayload(kNotResidentPayload, absl::Cord("loading"));
      return s;
    }
  }
  if (size_bytes > budget_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("adapter needs ", absl::StrFormat("%.1f", MiB(size_bytes)),
                     " MiB of memory but the adapter cache holds ", absl::StrFormat("%.1f", MiB(budget_)),
                     " MiB; raise --adapter-cache-mb"));
  }
  absl::Status s = absl::UnavailableError(absl::StrCat("adapter ", key, " is not resident"));
  s.SetPayload(kNotResidentPayload, absl::Cord("waiting"));
  if (!MakeRoom(size_bytes)) return s;  // pinned adapters fill the budget: retry after an unpin
  Entry& e = entries_[key];
  e.loading = true;
  e.bytes = size_bytes;
  loading_bytes_ += size_bytes;
  load_queue_.push_back(key);
  cv_.SignalAll();
  return s;
}

absl::Status AdapterCache::Prefetch(const std::string& key, int64_t size_bytes, absl::Duration timeout,
                                    const std::function<bool()>& cancelled) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<AdapterPin> pin = TryPin(key, size_bytes);
    if (pin.ok()) return absl::OkStatus();  // the pin drops here; the adapter stays cached
    if (!IsNotResident(pin.status())) return pin.status();
    if (cancelled && cancelled()) return absl::CancelledError("prefetch cancelled by the client");
    MutexLock lock(&mu_);
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("adapter ", key, " did not become resident within ", absl::FormatDuration(timeout),
                       "; every cached adapter is in use, retry later or raise --adapter-cache-mb"));
    }
    cv_.WaitWithTimeout(&mu_, absl::Milliseconds(50));
  }
}

void AdapterCache::Erase(const std::string& key) {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.permanent) return;
  Entry& e = it->second;
  if (e.loading) {
    e.error = absl::NotFoundError("the adapter was deleted before the request could start; upload it again");
    return;  // the loader discards its result and removes the entry
  }
  if (e.pins > 0) {
    // Running requests keep the adapter: its bytes stay counted until the
    // last pin goes (Unpin removes the entry).
    e.erased = true;
    return;
  }
  if (e.in_lru) lru_.erase(e.lru);
  if (e.adapter) resident_bytes_ -= e.bytes;
  entries_.erase(it);
}

AdapterCache::State AdapterCache::StateOf(const std::string& key) const {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.erased) return State::kAbsent;
  const Entry& e = it->second;
  if (e.adapter) return e.pins > 0 ? State::kPinned : State::kResident;
  return e.loading ? State::kLoading : State::kAbsent;
}

AdapterCache::Stats AdapterCache::stats() const {
  MutexLock lock(&mu_);
  Stats s = counters_;
  s.resident_bytes = resident_bytes_;
  for (const auto& [key, e] : entries_) {
    if (e.adapter) ++s.resident;
    if (e.pins > 0) ++s.pinned;
  }
  return s;
}

void AdapterCache::LoaderLoop() {
  while (true) {
    std::string key;
    {
      MutexLock lock(&mu_);
      while (!stop_ && load_queue_.empty()) cv_.Wait(&mu_);
      if (stop_) return;
      key = load_queue_.front();
      load_queue_.pop_front();
    }
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<const Adapter>> loaded = loader_(key);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    {
      MutexLock lock(&mu_);
      auto it = entries_.find(key);
      Entry& e = it->second;
      e.loading = false;
      loading_bytes_ -= e.bytes;
      ++counters_.loads;
      if (!e.error.ok()) {
        entries_.erase(it);  // erased while loading
      } else if (!loaded.ok()) {
        ++counters_.load_failures;
        spdlog::warn("adapter cache: loading {} failed: {}", key, loaded.status().ToString());
        const absl::StatusCode code = loaded.status().code();
        if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kDataLoss ||
            code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition) {
          e.error = loaded.status();  // permanent for this version: every waiter gets it
        } else {
          entries_.erase(it);  // transient (I/O, memory): the next request retries the load
        }
      } else {
        e.adapter = *std::move(loaded);
        e.bytes = e.adapter->parameter_bytes;
        resident_bytes_ += e.bytes;
        e.lru = lru_.insert(lru_.end(), key);
        e.in_lru = true;
        spdlog::info("adapter cache: loaded {} ({:.1f} MiB) in {:.1f} ms", key, MiB(e.bytes), ms);
      }
      cv_.SignalAll();
    }
    if (observer_.on_load) observer_.on_load(ms, loaded.ok());
    Notify();
  }
}

}  // namespace tessera
