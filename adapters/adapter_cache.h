// The resident adapter cache: which adapters are loaded in memory, under a
// byte budget, with LRU eviction of the ones no request uses.
//
// Keys are opaque strings naming one immutable version of an adapter (the
// server uses "@" + store id; start-up adapters use their name). A request
// pins its adapter for its whole life: a Pin is a shared_ptr to the adapter
// whose destruction releases the pin. Eviction and Erase only drop the
// cache's own reference, so they can never change or free the adapter of a
// request in flight: that request keeps the version it pinned.
//
// Loads run on the cache's own loader thread, one at a time, never on the
// caller's: TryPin on an adapter that is not resident starts its load (once,
// however many callers ask: single flight) and returns a NotResident status.
// The listener then fires when the load ends, so the caller retries. A load
// starts only when the budget can hold it next to the pinned and loading
// adapters, so the resident bytes never exceed the budget (permanent
// adapters are not counted).
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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/adapter.h"
#include "common/mutex.h"

namespace tessera {

// The adapter, kept pinned while any copy of the Pin lives.
using AdapterPin = std::shared_ptr<const Adapter>;

// True for the status TryPin returns while the adapter is being loaded.
bool IsNotResident(const absl::Status& status);

class AdapterCache {
 public:
  // Loads the adapter a key names (runs on the loader thread).
  using Loader = std::function<absl::StatusOr<std::shared_ptr<const Adapter>>(const std::string& key)>;

  struct Observer {
    std::function<void(double load_ms, bool ok)> on_load;  // after each load
    std::function<void()> on_evict;                        // per eviction
  };

  AdapterCache(int64_t budget_bytes, Loader loader, Observer observer = {});
  ~AdapterCache();  // waits for the load in progress, then stops

  // Called after every load (success or failure) and every pin release.
  // Must be quick and must not call back into the cache.
  void SetListener(std::function<void()> listener);

  // Registers an adapter that is always resident and never evicted.
  void AddPermanent(const std::string& key, std::shared_ptr<const Adapter> adapter);

  // Resident: the pinned adapter. Otherwise starts the load if none is
  // running for key and returns a NotResident status (IsNotResident). The
  // load's error is returned from then on for this key when permanent
  // (NotFound, DataLoss, InvalidArgument, FailedPrecondition); after a
  // transient one the next call retries the load. ResourceExhausted when size_bytes alone exceeds the
  // budget. size_bytes is the adapter's resident size as recorded in the store.
  absl::StatusOr<AdapterPin> TryPin(const std::string& key, int64_t size_bytes);

  // Makes key resident, waiting up to timeout for the load. The adapter stays
  // resident (unpinned) afterwards until evicted.
  // Stops early (Cancelled) once `cancelled` returns true.
  absl::Status Prefetch(const std::string& key, int64_t size_bytes, absl::Duration timeout,
                        const std::function<bool()>& cancelled = nullptr);

  // Forgets key (the adapter was deleted): its memory is freed when the last
  // pin goes. A load in progress finishes but is discarded.
  void Erase(const std::string& key);

  enum class State { kAbsent, kLoading, kResident, kPinned };
  State StateOf(const std::string& key) const;

  struct Stats {
    int64_t budget_bytes = 0;
    int64_t resident_bytes = 0;  // cached (pinned or not), not permanent
    int32_t resident = 0;        // entries, permanent included
    int32_t pinned = 0;
    int64_t loads = 0;
    int64_t load_failures = 0;
    int64_t evictions = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::shared_ptr<const Adapter> adapter;  // set when resident
    int64_t bytes = 0;
    int32_t pins = 0;
    bool permanent = false;
    bool loading = false;
    absl::Status error;                    // the failed load's error
    std::list<std::string>::iterator lru;  // valid when resident, unpinned, not permanent
    bool in_lru = false;
    bool erased = false;  // deleted while pinned; removed at the last unpin
  };

  // Evicts unpinned LRU entries until `needed` more bytes fit.
  bool MakeRoom(int64_t needed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AdapterPin PinLocked(const std::string& key, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpin(const std::string& key);
  void LoaderLoop();
  void Notify();

  const int64_t budget_;
  const Loader loader_;
  const Observer observer_;

  mutable Mutex mu_;
  CondVar cv_;  // load finished / queue changed
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // front: least recently used
  std::deque<std::string> load_queue_ ABSL_GUARDED_BY(mu_);
  int64_t resident_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // cached entries
  int64_t loading_bytes_ ABSL_GUARDED_BY(mu_) = 0;   // reserved by queued or running loads
  Stats counters_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> listener_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_CACHE_H_
