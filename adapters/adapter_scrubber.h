// AdapterScrubber: re-verifies the stored adapters in the background. Cache
// loads trust the store's files (written once, fsync'ed, checked against
// their sha256 when the upload was committed) and check only their sizes;
// the scrubber re-reads every entry's files at a bounded rate and checks
// their sha256, so a file changed on disk after upload is found and
// quarantined (AdapterStore::Verify) and on_quarantined(entry) is called, for
// the server to drop the adapter from its cache.
//
// Passes run one after another with `interval` between them (the first
// starts at once); each reads at most bytes_per_second.
//
// Thread safety: the constructor starts the scrubbing thread; the destructor
// stops it (once the file being read, if any, is read) and joins it. stats() may be called from any
// thread.
#ifndef TESSERA_ADAPTERS_ADAPTER_SCRUBBER_H_
#define TESSERA_ADAPTERS_ADAPTER_SCRUBBER_H_

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/time/time.h"
#include "adapters/adapter_store.h"
#include "common/mutex.h"

namespace tessera {

struct AdapterScrubOptions {
  int64_t bytes_per_second = 32 << 20;  // > 0
  absl::Duration interval = absl::Hours(1);
};

class AdapterScrubber {
 public:
  // store must outlive the scrubber.
  AdapterScrubber(AdapterStore* store, AdapterScrubOptions options,
                  std::function<void(const StoredAdapter&)> on_quarantined);
  ~AdapterScrubber();
  AdapterScrubber(const AdapterScrubber&) = delete;
  AdapterScrubber& operator=(const AdapterScrubber&) = delete;

  struct Stats {
    int64_t passes = 0;       // completed
    int64_t verified = 0;     // entries checked, all passes
    int64_t quarantined = 0;  // by the scrubber
    int64_t bytes = 0;        // read
  };
  Stats stats() const;

 private:
  void Loop();
  // Sleeps until `until` or the stop; false once stopping.
  bool SleepUntil(absl::Time until);

  AdapterStore* const store_;
  const AdapterScrubOptions options_;
  const std::function<void(const StoredAdapter&)> on_quarantined_;
  mutable Mutex mu_;
  CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_SCRUBBER_H_
