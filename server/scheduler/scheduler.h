// The scheduler: one thread owns the engine. Callers (gRPC reactors, the
// offline batch tool) Submit requests; the thread admits them FIFO into the
// running batch while KV blocks and batch slots allow, builds one BatchPlan per
// step (prefill rows of new requests alongside decode rows of running ones),
// samples, and streams results back through the request's callbacks.
//
// Thread safety: Submit, StopAdmitting, Stop and RequestHandle::Cancel may be
// called from any thread. Callbacks run on the scheduler thread.
#ifndef TESSERA_SERVER_SCHEDULER_SCHEDULER_H_
#define TESSERA_SERVER_SCHEDULER_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/engine/engine.h"
#include "server/model/tokenizer.h"
#include "server/scheduler/generation.h"

namespace tessera {

struct SchedulerOptions {
  int32_t max_batch_size = 8;
  // Longest sequence (prompt + generated) served; 0: max_position_embeddings.
  int32_t context_length = 0;
  // Tokens per engine step: decode rows first, then prompt chunks (chunked
  // prefill, oldest request first), so a long prompt never needs one giant
  // activation buffer and never stalls the decoding requests.
  int32_t max_step_tokens = 512;
  int32_t max_queue = 1024;
  int32_t max_new_tokens_limit = 1024;
  int32_t max_stop_strings = 16;
};

class Scheduler;

// Cancels its request when Cancel() is called or when it is destroyed. Create
// it before Submit so that a cancellation can never race the registration.
class RequestHandle {
 public:
  ~RequestHandle() { Cancel(); }
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  struct Wake;
  explicit RequestHandle(std::shared_ptr<Wake> wake) : wake_(std::move(wake)) {}
  std::shared_ptr<Wake> wake_;
  std::atomic<bool> cancelled_{false};
};

class Scheduler {
 public:
  // engine, tokenizer and adapters (nullable) must outlive the scheduler.
  // eos_ids end generation unless a request sets ignore_eos.
  Scheduler(Engine* engine, const Tokenizer* tokenizer, std::vector<int32_t> eos_ids, SchedulerOptions options,
            const AdapterRegistry* adapters = nullptr);
  ~Scheduler();  // Stop()

  void Start();

  std::shared_ptr<RequestHandle> NewHandle();

  // Validates params and queues the request. Errors (the request is not
  // queued and no callback runs): InvalidArgument for bad parameters,
  // NotFound for an unknown adapter, FailedPrecondition for one that failed
  // to load, ResourceExhausted for a full queue or a request larger than the
  // whole KV cache, Unavailable while shutting down.
  absl::Status Submit(std::shared_ptr<RequestHandle> handle, GenerationParams params,
                      GenerationCallbacks callbacks);

  // New submissions fail with Unavailable; queued and running requests go on.
  void StopAdmitting();
  // Cancels everything queued or running (each gets on_finish with
  // kCancelled) and joins the thread.
  void Stop();

  // Waits until no request is queued or running, up to timeout.
  bool WaitIdle(absl::Duration timeout);

  int32_t context_length() const { return context_length_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  friend struct RequestHandle::Wake;
  struct Request;

  absl::Status Validate(const GenerationParams& p) const;
  void Loop();
  void Admit(std::vector<std::unique_ptr<Request>>* cancelled);
  void RunStep();
  // Prompt tokens of each prefilling request to run this step (0: wait).
  void AssignPrefillChunks();
  void FinishRequest(Request& r, FinishReason reason, absl::Status status = absl::OkStatus());

  Engine* engine_;
  const Tokenizer* tokenizer_;
  const AdapterRegistry* adapters_;
  std::vector<int32_t> eos_ids_;
  SchedulerOptions options_;
  int32_t context_length_;
  int32_t vocab_size_;

  std::shared_ptr<RequestHandle::Wake> wake_;  // mutex, condvar and the queue
  std::thread thread_;
  std::atomic<bool> admitting_{true};
  uint64_t next_arrival_ = 0;  // guarded by wake_->mu

  // Owned by the scheduler thread.
  std::vector<std::unique_ptr<Request>> running_;
  std::vector<float> logits_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_SCHEDULER_SCHEDULER_H_
