// A fixed pool of worker threads for data-parallel CPU ops.
//
// Thread safety: ParallelFor may be called from one thread at a time (the
// engine thread). It blocks until every chunk has run.
#ifndef TESSERA_KERNELS_CPU_THREAD_POOL_H_
#define TESSERA_KERNELS_CPU_THREAD_POOL_H_

#include <cstdint>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "common/mutex.h"
#include "kernels/exec.h"

namespace tessera {

class ThreadPool {
 public:
  // num_threads counts the calling thread: 1 runs everything inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(begin, end) over [0, n) split into contiguous chunks of at least
  // min_chunk items, one chunk per thread at most. Allocates nothing.
  void ParallelFor(int64_t n, int64_t min_chunk, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  Mutex mu_;
  CondVar work_cv_;
  CondVar done_cv_;
  const absl::FunctionRef<void(int64_t, int64_t)>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t job_n_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t job_chunks_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

// ParallelFor on the context's pool, or inline when it has none.
inline void ParallelFor(const ExecContext& ctx, int64_t n, int64_t min_chunk,
                        absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (ctx.pool != nullptr) {
    ctx.pool->ParallelFor(n, min_chunk, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

}  // namespace tessera

#endif  // TESSERA_KERNELS_CPU_THREAD_POOL_H_
