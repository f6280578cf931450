#include "adapters/adapter_cache.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

constexpr char kNotResidentPayload[] = "type.tessera.dev/adapter-not-resident";

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

bool IsNotResident(const absl::Status& status) { return status.GetPayload(kNotResidentPayload).has_value(); }

AdapterCache::AdapterCache(AdapterPool* pool, Loader loader, Observer observer)
    : pool_(pool), loader_(std::move(loader)), observer_(std::move(observer)) {
  counters_.slots = pool_->num_slots();
  // Slot 0 is handed out first.
  for (int32_t slot = pool_->num_slots() - 1; slot >= 0; --slot) free_slots_.push_back(slot);
  thread_ = std::thread([this] { LoaderLoop(); });
}

AdapterCache::Loader AdapterCache::CopyingLoader(HeapLoader load) {
  return [load = std::move(load)](const std::string& key, AdapterPool& pool,
                                  int32_t slot) -> absl::StatusOr<std::shared_ptr<const Adapter>> {
    TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<const Adapter> adapter, load(key));
    TESSERA_RETURN_IF_ERROR(pool.Write(slot, *adapter));
    return adapter;
  };
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

absl::Status AdapterCache::AddPermanent(const std::string& key, std::shared_ptr<const Adapter> adapter) {
  MutexLock lock(&mu_);
  if (entries_.count(key)) return absl::AlreadyExistsError(absl::StrCat("adapter '", key, "' is given twice"));
  if (free_slots_.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat("no adapter slot is left for start-up adapter '", key,
                                                     "' (", pool_->num_slots(),
                                                     " slots); raise --adapter-slots"));
  }
  const int32_t slot = free_slots_.back();
  TESSERA_RETURN_IF_ERROR(pool_->Write(slot, *adapter));
  free_slots_.pop_back();
  Entry& e = entries_[key];
  e.adapter = adapter->Metadata();
  e.slot = slot;
  e.bytes = adapter->parameter_bytes;
  e.permanent = true;
  return absl::OkStatus();
}

int32_t AdapterCache::TakeSlot() {
  // Evict only when that frees a slot now: evicting and still waiting would
  // throw away adapters that queued requests are about to pin; and never one
  // that a queued request wants.
  auto victim_it = lru_.begin();
  while (victim_it != lru_.end() && entries_.at(*victim_it).wanted > 0) ++victim_it;
  if (free_slots_.empty() && victim_it != lru_.end()) {
    const std::string victim = *victim_it;
    lru_.erase(victim_it);
    auto it = entries_.find(victim);
    it->second.in_lru = false;
    resident_bytes_ -= it->second.bytes;
    spdlog::info("adapter cache: evicted {} from slot {} ({:.1f} MiB)", victim, it->second.slot,
                 MiB(it->second.bytes));
    FreeSlot(it->second);
    entries_.erase(it);
    ++counters_.evictions;
    if (observer_.on_evict) observer_.on_evict();
  }
  if (free_slots_.empty()) return -1;
  const int32_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void AdapterCache::FreeSlot(Entry& e) {
  if (e.slot < 0) return;
  pool_->Clear(e.slot);
  free_slots_.push_back(e.slot);
  e.slot = -1;
}

AdapterPin AdapterCache::PinLocked(const std::string& key, Entry& e) {
  if (e.in_lru) {
    lru_.erase(e.lru);
    e.in_lru = false;
  }
  ++e.pins;
  // The token keeps the metadata alive even if the entry is erased; its
  // deleter releases the pin (and so, at the last one, the slot).
  auto* token = new AdapterPin::Token{e.adapter, e.slot};
  return AdapterPin(std::shared_ptr<const AdapterPin::Token>(token, [this, key](const AdapterPin::Token* t) {
    delete t;
    Unpin(key);
  }));
}

void AdapterCache::Unpin(const std::string& key) {
  {
    MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.pins > 0) {
      Entry& e = it->second;
      if (--e.pins == 0 && e.erased) {
        resident_bytes_ -= e.bytes;
        FreeSlot(e);
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

absl::StatusOr<AdapterPin> AdapterCache::TryPin(const std::string& key) {
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
  absl::Status s = absl::UnavailableError(absl::StrCat("adapter ", key, " is not resident"));
  s.SetPayload(kNotResidentPayload, absl::Cord("waiting"));
  StartLoadLocked(key);  // when no slot can be had: retry after an unpin
  return s;
}

bool AdapterCache::StartLoadLocked(const std::string& key) {
  const int32_t slot = TakeSlot();
  if (slot < 0) return false;
  Entry& e = entries_[key];
  e.loading = true;
  e.slot = slot;
  load_queue_.push_back(key);
  cv_.SignalAll();
  return true;
}

AdapterWant AdapterCache::Want(const std::string& key) {
  bool hit = false;
  {
    MutexLock lock(&mu_);
    Entry& e = entries_[key];
    ++e.wanted;
    hit = e.adapter != nullptr;
    if (!e.erased && !e.adapter && !e.loading && e.error.ok()) StartLoadLocked(key);
  }
  if (observer_.on_want) observer_.on_want(hit);
  static const char kToken = 0;
  return AdapterWant(std::shared_ptr<const void>(&kToken, [this, key](const void*) { Unwant(key); }));
}

void AdapterCache::Unwant(const std::string& key) {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.wanted == 0) return;  // erased (and maybe re-created) meanwhile
  Entry& e = it->second;
  --e.wanted;
  // An entry that only held wants (its load could not start) goes.
  if (e.wanted == 0 && !e.adapter && !e.loading && e.pins == 0 && e.error.ok() && !e.erased && !e.permanent) {
    entries_.erase(it);
  }
}

absl::Status AdapterCache::Prefetch(const std::string& key, absl::Duration timeout,
                                    const std::function<bool()>& cancelled) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<AdapterPin> pin = TryPin(key);
    if (pin.ok()) return absl::OkStatus();  // the pin drops here; the adapter stays cached
    if (!IsNotResident(pin.status())) return pin.status();
    if (cancelled && cancelled()) return absl::CancelledError("prefetch cancelled by the client");
    MutexLock lock(&mu_);
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("adapter ", key, " did not become resident within ", absl::FormatDuration(timeout),
                       "; every adapter slot is in use, retry later or raise --adapter-slots"));
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
    // Running requests keep the adapter and its slot until the last pin
    // goes (Unpin removes the entry).
    e.erased = true;
    return;
  }
  if (e.in_lru) lru_.erase(e.lru);
  if (e.adapter) resident_bytes_ -= e.bytes;
  FreeSlot(e);
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
  s.free_slots = static_cast<int32_t>(free_slots_.size());
  for (const auto& [key, e] : entries_) {
    if (e.adapter) ++s.resident;
    if (e.pins > 0) ++s.pinned;
  }
  return s;
}

void AdapterCache::LoaderLoop() {
  while (true) {
    std::string key;
    int32_t slot = -1;
    {
      MutexLock lock(&mu_);
      while (!stop_ && load_queue_.empty()) cv_.Wait(&mu_);
      if (stop_) return;
      key = load_queue_.front();
      load_queue_.pop_front();
      slot = entries_.at(key).slot;
    }
    // The slot is this load's alone: no pin names it until the entry is
    // marked resident below, under the lock.
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<const Adapter>> loaded = loader_(key, *pool_, slot);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    {
      MutexLock lock(&mu_);
      auto it = entries_.find(key);
      Entry& e = it->second;
      e.loading = false;
      ++counters_.loads;
      if (!e.error.ok()) {
        FreeSlot(e);
        entries_.erase(it);  // erased while loading
      } else if (!loaded.ok()) {
        ++counters_.load_failures;
        spdlog::warn("adapter cache: loading {} failed: {}", key, loaded.status().ToString());
        const absl::StatusCode code = loaded.status().code();
        FreeSlot(e);
        if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kDataLoss ||
            code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition) {
          e.error = loaded.status();  // permanent for this version: every waiter gets it
        } else {
          entries_.erase(it);  // transient (I/O, memory): the next request retries the load
        }
      } else {
        e.adapter = (*loaded)->Metadata();
        e.bytes = e.adapter->parameter_bytes;
        resident_bytes_ += e.bytes;
        e.lru = lru_.insert(lru_.end(), key);
        e.in_lru = true;
        spdlog::info("adapter cache: loaded {} ({:.1f} MiB) into slot {} in {:.1f} ms", key, MiB(e.bytes),
                     e.slot, ms);
      }
      cv_.SignalAll();
    }
    if (observer_.on_load) observer_.on_load(ms, loaded.ok());
    Notify();
  }
}

}  // namespace tessera
