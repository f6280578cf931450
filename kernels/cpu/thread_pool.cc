#include "kernels/cpu/thread_pool.h"

#include <algorithm>

#include "kernels/cpu/float_env.h"

namespace tessera {

ThreadPool::ThreadPool(int num_threads) {
  const int workers = std::max(1, num_threads) - 1;
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i + 1); });
  }
}

ThreadPool::~ThreadPool() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  work_cv_.SignalAll();
  for (std::thread& t : workers_) t.join();
}

namespace {
void RunChunk(absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t n, int64_t chunks, int64_t index) {
  const int64_t begin = n * index / chunks;
  const int64_t end = n * (index + 1) / chunks;
  if (begin < end) fn(begin, end);
}
}  // namespace

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t chunks = std::min<int64_t>(num_threads(), (n + min_chunk - 1) / min_chunk);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  {
    MutexLock lock(&mu_);
    job_ = &fn;  // fn outlives the job: this call waits for every chunk
    job_n_ = n;
    job_chunks_ = chunks;
    pending_ = static_cast<int>(chunks) - 1;
    ++generation_;
  }
  work_cv_.SignalAll();
  RunChunk(fn, n, chunks, 0);
  MutexLock lock(&mu_);
  while (pending_ != 0) done_cv_.Wait(&mu_);
  job_ = nullptr;
}

void ThreadPool::WorkerLoop(int index) {
  FlushDenormalsOnThisThread();
  int64_t seen = 0;
  while (true) {
    const absl::FunctionRef<void(int64_t, int64_t)>* job;
    int64_t n, chunks;
    {
      MutexLock lock(&mu_);
      while (!stop_ && generation_ == seen) work_cv_.Wait(&mu_);
      if (stop_) return;
      seen = generation_;
      if (index >= job_chunks_) continue;
      job = job_;
      n = job_n_;
      chunks = job_chunks_;
    }
    RunChunk(*job, n, chunks, index);
    {
      MutexLock lock(&mu_);
      if (--pending_ == 0) done_cv_.Signal();
    }
  }
}

}  // namespace tessera
