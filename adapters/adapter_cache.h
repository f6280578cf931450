// The resident adapter cache: which adapters hold a slot of the adapter
// pool (adapters/adapter_pool.h), with LRU eviction of the ones no request
// uses.
//
// Keys are opaque strings naming one immutable version of an adapter (the
// server uses "@" + store id; start-up adapters use their name). A request
// pins its adapter for its whole life: an AdapterPin carries the adapter's
// metadata and its pool slot, and its last copy's destruction releases the
// pin. A slot is assigned when a load starts, written when it completes and
// kept while any pin is held: eviction and Erase happen only at zero pins
// (Erase of a pinned adapter waits for the last pin), so the slot of a
// request in flight never changes or holds another adapter.
//
// Loads run on the cache's own loader thread, one at a time, never on the
// caller's: TryPin on an adapter that is not resident starts its load (once,
// however many callers ask: single flight) and returns a NotResident status.
// The listener then fires when the load ends, so the caller retries. A load
// starts only when a slot is free or an unpinned adapter can be evicted from
// one; permanent (start-up) adapters keep their slots for good.
//
// Thread safety: every method may be called from any thread. The loader and
// the listener run without the cache's lock held.
#ifndef TESSERA_ADAPTERS_ADAPTER_CACHE_H_
#define TESSERA_ADAPTERS_ADAPTER_CACHE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/adapter.h"
#include "adapters/adapter_pool.h"
#include "common/mutex.h"

namespace tessera {

// A pinned adapter: its metadata (weights live in the pool) and its slot,
// both fixed while any copy of the pin lives. A default pin holds nothing.
class AdapterPin {
 public:
  AdapterPin() = default;
  explicit operator bool() const { return token_ != nullptr; }
  const Adapter& operator*() const { return *token_->adapter; }
  const Adapter* operator->() const { return token_->adapter.get(); }
  const Adapter* get() const { return token_ ? token_->adapter.get() : nullptr; }
  int32_t slot() const { return token_ ? token_->slot : -1; }
  void reset() { token_.reset(); }

 private:
  friend class AdapterCache;
  struct Token {
    std::shared_ptr<const Adapter> adapter;
    int32_t slot = -1;
  };
  explicit AdapterPin(std::shared_ptr<const Token> token) : token_(std::move(token)) {}
  std::shared_ptr<const Token> token_;
};

// A queued request's claim on an adapter it will pin: while any want is held
// the adapter, once resident, is not evicted for another load, so a load that
// started for a queued request is not thrown away before the request runs.
// Releasing the last want (destruction or reset) lifts that.
class AdapterWant {
 public:
  AdapterWant() = default;
  explicit operator bool() const { return token_ != nullptr; }
  void reset() { token_.reset(); }

 private:
  friend class AdapterCache;
  explicit AdapterWant(std::shared_ptr<const void> token) : token_(std::move(token)) {}
  std::shared_ptr<const void> token_;
};

// True for the status TryPin returns while the adapter is being loaded.
bool IsNotResident(const absl::Status& status);

class AdapterCache {
 public:
  // Loads the adapter a key names into `slot` of `pool` and returns its
  // metadata (runs on the loader thread; the slot is the load's alone). On
  // failure the slot may hold anything: the cache clears it.
  using Loader = std::function<absl::StatusOr<std::shared_ptr<const Adapter>>(const std::string& key,
                                                                              AdapterPool& pool, int32_t slot)>;
  // A Loader from one that loads into heap memory, then copies into the slot.
  using HeapLoader = std::function<absl::StatusOr<std::shared_ptr<const Adapter>>(const std::string& key)>;
  static Loader CopyingLoader(HeapLoader load);

  struct Observer {
    std::function<void(double load_ms, bool ok)> on_load;  // after each load
    std::function<void()> on_evict;                        // per eviction
    // Per Want: hit when the adapter was resident, miss when it had to load
    // (or is loading for an earlier request).
    std::function<void(bool hit)> on_want;
  };

  // pool must outlive the cache; its slots are the cache's to assign.
  AdapterCache(AdapterPool* pool, Loader loader, Observer observer = {});
  ~AdapterCache();  // waits for the load in progress, then stops

  // Called after every load (success or failure) and every pin release.
  // Must be quick and must not call back into the cache.
  void SetListener(std::function<void()> listener);

  // Writes an adapter into a slot for good: always resident, never evicted.
  // ResourceExhausted when no slot is free; AlreadyExists for a known key;
  // the pool's error when it does not fit.
  absl::Status AddPermanent(const std::string& key, std::shared_ptr<const Adapter> adapter);

  // Resident: the pinned adapter. Otherwise starts the load if none is
  // running for key and a slot can be had, and returns a NotResident status
  // (IsNotResident). The load's error is returned from then on for this key
  // when permanent (NotFound, DataLoss, InvalidArgument, FailedPrecondition);
  // after a transient one the next call retries the load.
  absl::StatusOr<AdapterPin> TryPin(const std::string& key);

  // Records that a queued request will pin key, and starts its load now if
  // it is not resident or loading and a slot can be had (prefetch from the
  // queue): the load overlaps the wait for a batch seat. Never fails; a load
  // error shows at TryPin.
  AdapterWant Want(const std::string& key);

  // Makes key resident, waiting up to timeout for the load. The adapter stays
  // resident (unpinned) afterwards until evicted.
  // Stops early (Cancelled) once `cancelled` returns true.
  absl::Status Prefetch(const std::string& key, absl::Duration timeout,
                        const std::function<bool()>& cancelled = nullptr);

  // Forgets key (the adapter was deleted): its memory is freed when the last
  // pin goes. A load in progress finishes but is discarded.
  void Erase(const std::string& key);

  enum class State { kAbsent, kLoading, kResident, kPinned };
  State StateOf(const std::string& key) const;

  struct Stats {
    int32_t slots = 0;           // of the pool, permanent ones included
    int32_t free_slots = 0;      // neither resident nor loading
    int64_t resident_bytes = 0;  // parameters of cached adapters (pinned or not), not permanent
    int32_t resident = 0;        // entries, permanent included
    int32_t pinned = 0;
    int64_t loads = 0;
    int64_t load_failures = 0;
    int64_t evictions = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::shared_ptr<const Adapter> adapter;  // metadata, set when resident
    int32_t slot = -1;                       // set while loading or resident
    int64_t bytes = 0;
    int32_t pins = 0;
    bool permanent = false;
    bool loading = false;
    absl::Status error;                    // the failed load's error
    std::list<std::string>::iterator lru;  // valid when resident, unpinned, not permanent
    bool in_lru = false;
    bool erased = false;  // deleted while pinned; removed at the last unpin
    int32_t wanted = 0;   // AdapterWants held: not evicted while > 0
  };

  // A free slot, evicting the least recently used unpinned, unwanted adapter
  // when none is; -1 when every slot is pinned, wanted, permanent or loading.
  int32_t TakeSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeSlot(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AdapterPin PinLocked(const std::string& key, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpin(const std::string& key);
  void Unwant(const std::string& key);
  // Assigns a slot (TakeSlot) and queues the load of key; false when no
  // slot can be had.
  bool StartLoadLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoaderLoop();
  void Notify();

  AdapterPool* const pool_;
  const Loader loader_;
  const Observer observer_;

  mutable Mutex mu_;
  CondVar cv_;  // load finished / queue changed
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // front: least recently used
  std::deque<std::string> load_queue_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  int64_t resident_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // cached entries
  Stats counters_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> listener_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_CACHE_H_
