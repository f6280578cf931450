// A fixed set of worker threads running posted tasks in FIFO order: the place
// for request work (tokenization, validation) that must not run on gRPC's
// callback threads.
//
// Thread safety: Post may be called from any thread. The destructor runs the
// tasks already posted, then joins the workers; tasks must not Post to a
// queue that is being destroyed.
#ifndef TESSERA_COMMON_WORK_QUEUE_H_
#define TESSERA_COMMON_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

namespace tessera {

class WorkQueue {
 public:
  explicit WorkQueue(int num_threads);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Post(std::function<void()> task);

 private:
  void Work();

  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_WORK_QUEUE_H_
