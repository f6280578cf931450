// Tessera's mutex and condition variable: absl::Mutex and absl::CondVar with
// the compiler's thread-safety annotations (ABSL_GUARDED_BY and friends are
// checked by clang's -Wthread-safety).
//
// Why a wrapper and not absl::Mutex directly: Debian's Abseil is built
// without ThreadSanitizer, so TSan cannot see absl::Mutex's synchronization
// (it blocks with raw futex calls inside the uninstrumented library) and
// would report every guarded access as a race. Under TSan these classes are
// std::mutex and std::condition_variable, which TSan intercepts; everywhere
// else they are absl's. The interface is the subset Tessera uses.
//
// Thread safety: these are the synchronization primitives.
#ifndef TESSERA_COMMON_MUTEX_H_
#define TESSERA_COMMON_MUTEX_H_

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#if defined(__SANITIZE_THREAD__)
#define TESSERA_MUTEX_STD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TESSERA_MUTEX_STD 1
#endif
#endif

#ifdef TESSERA_MUTEX_STD
#include <chrono>
#include <condition_variable>
#include <mutex>
#else
#include "absl/synchronization/mutex.h"
#endif

namespace tessera {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
#ifdef TESSERA_MUTEX_STD
  std::mutex mu_;
#else
  struct AbslMutex {
    void lock() ABSL_NO_THREAD_SAFETY_ANALYSIS { m.Lock(); }
    void unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS { m.Unlock(); }
    absl::Mutex m;
  } mu_;
#endif
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waits release the mutex and hold it again on return; wake-ups may be
// spurious, so wait in a loop on the condition.
class CondVar {
 public:
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
#ifdef TESSERA_MUTEX_STD
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
#else
    cv_.Wait(&mu->mu_.m);
#endif
  }
  // True when the timeout passed (the mutex is held again either way).
  bool WaitWithTimeout(Mutex* mu, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
#ifdef TESSERA_MUTEX_STD
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool timed_out = cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout)) == std::cv_status::timeout;
    lock.release();
    return timed_out;
#else
    return cv_.WaitWithTimeout(&mu->mu_.m, timeout);
#endif
  }
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return WaitWithTimeout(mu, deadline - absl::Now());
  }
  void Signal() {
#ifdef TESSERA_MUTEX_STD
    cv_.notify_one();
#else
    cv_.Signal();
#endif
  }
  void SignalAll() {
#ifdef TESSERA_MUTEX_STD
    cv_.notify_all();
#else
    cv_.SignalAll();
#endif
  }

 private:
#ifdef TESSERA_MUTEX_STD
  std::condition_variable cv_;
#else
  absl::CondVar cv_;
#endif
};

}  // namespace tessera

#endif  // TESSERA_COMMON_MUTEX_H_
