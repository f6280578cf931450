#include "adapters/adapter_scrubber.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace tessera {

AdapterScrubber::AdapterScrubber(AdapterStore* store, AdapterScrubOptions options,
                                 std::function<void(const StoredAdapter&)> on_quarantined)
    : store_(store), options_(options), on_quarantined_(std::move(on_quarantined)) {
  thread_ = std::thread([this] { Loop(); });
}

AdapterScrubber::~AdapterScrubber() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  thread_.join();
}

AdapterScrubber::Stats AdapterScrubber::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

bool AdapterScrubber::SleepUntil(absl::Time until) {
  MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return true;
    cv_.WaitWithTimeout(&mu_, left);
  }
  return false;
}

void AdapterScrubber::Loop() {
  const double bytes_per_second = static_cast<double>(std::max<int64_t>(options_.bytes_per_second, 1));
  while (true) {
    const absl::Time pass_start = absl::Now();
    // Pacing: after each chunk, wait until the bytes read so far are due.
    absl::Time paced_from = absl::Now();
    double paced_bytes = 0;
    bool stopping = false;
    auto pace = [&](size_t bytes) {
      paced_bytes += static_cast<double>(bytes);
      {
        MutexLock lock(&mu_);
        stats_.bytes += static_cast<int64_t>(bytes);
      }
      if (!SleepUntil(paced_from + absl::Seconds(paced_bytes / bytes_per_second))) stopping = true;
    };
    for (const StoredAdapter& entry : store_->List()) {
      {
        MutexLock lock(&mu_);
        if (stop_) return;
      }
      const absl::Status s = store_->Verify(entry, AdapterStore::VerifyMode::kFull, pace);
      if (stopping) return;
      {
        MutexLock lock(&mu_);
        ++stats_.verified;
        if (absl::IsDataLoss(s)) ++stats_.quarantined;
      }
      if (absl::IsDataLoss(s)) {
        spdlog::error("adapter scrub: {}", std::string(s.message()));
        if (on_quarantined_) on_quarantined_(entry);
      } else if (!s.ok() && !absl::IsNotFound(s)) {  // NotFound: deleted meanwhile
        spdlog::warn("adapter scrub: {}", std::string(s.message()));
      }
    }
    {
      MutexLock lock(&mu_);
      ++stats_.passes;
    }
    spdlog::debug("adapter scrub: pass done in {:.1f} s", absl::ToDoubleSeconds(absl::Now() - pass_start));
    if (!SleepUntil(absl::Now() + options_.interval)) return;
  }
}

}  // namespace tessera
