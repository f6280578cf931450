// The scheduler: one thread owns the engine. Callers (gRPC reactors, the
// offline batch tool) Submit requests; between steps the thread admits queued
// requests into the running batch (continuous batching) while KV blocks and
// batch slots allow, builds one BatchPlan per step (prefill chunks of new
// requests alongside decode rows of running ones), samples, and streams
// results back through the request's callbacks.
//
// Admission is fair across tenants: the next request admitted is the oldest
// one of the tenant that has been served the fewest tokens (virtual token
// counters; a tenant arriving late starts at the current minimum, so it
// neither starves others nor is starved). A request whose adapter is not
// resident stays queued while its load runs on the cache's thread and others
// are admitted past it; once admitted it pins the adapter until it finishes.
//
// Thread safety: Submit, StopAdmitting, Stop and RequestHandle::Cancel may be
// called from any thread. Callbacks run on the scheduler thread.
#ifndef TESSERA_SERVER_SCHEDULER_SCHEDULER_H_
#define TESSERA_SERVER_SCHEDULER_SCHEDULER_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/mutex.h"
#include "adapters/adapter_cache.h"
#include "server/engine/engine.h"
#include "server/scheduler/kv_block_manager.h"
#include "model/tokenizer.h"
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
  // Sleeps this long after each engine step. For tests only: it makes queue
  // waits long enough to observe deadlines and a full queue.
  absl::Duration testing_step_delay = absl::ZeroDuration();
};

class Scheduler;
struct ScheduledRequest;  // scheduler.cc

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

// What the scheduler thread sleeps on, shared with the handles (which may
// outlive the scheduler): the queue of submitted requests and the events
// that may let one in.
struct RequestHandle::Wake {
  Wake();
  ~Wake();
  Mutex mu;
  CondVar cv;
  std::deque<std::unique_ptr<ScheduledRequest>> queue ABSL_GUARDED_BY(mu);
  int32_t running ABSL_GUARDED_BY(mu) = 0;
  bool stop ABSL_GUARDED_BY(mu) = false;
  // Bumped by every event that may let a queued request in (submission,
  // cancellation, adapter load or unpin).
  uint64_t events ABSL_GUARDED_BY(mu) = 0;
};

class Scheduler {
 public:
  // engine, tokenizer, adapters (nullable) and observer's functions must
  // outlive the scheduler. eos_ids end generation unless a request sets
  // ignore_eos.
  Scheduler(Engine* engine, const Tokenizer* tokenizer, std::vector<int32_t> eos_ids,
            SchedulerOptions options, AdapterCache* adapters = nullptr);
  ~Scheduler();  // Stop()

  void Start();

  std::shared_ptr<RequestHandle> NewHandle();

  // Validates params and queues the request. Errors (the request is not
  // queued and no callback runs): InvalidArgument for bad parameters,
  // NotFound for an adapter on a server without an adapter cache,
  // ResourceExhausted for a full queue or a request larger than the whole KV
  // cache, Unavailable while shutting down. An adapter that fails to load
  // later finishes the request with the load's error.
  absl::Status Submit(std::shared_ptr<RequestHandle> handle, GenerationParams params,
                      GenerationCallbacks callbacks);

  // New submissions fail with Unavailable; queued and running requests go on.
  void StopAdmitting();
  // Cancels everything queued or running (each gets on_finish with
  // kCancelled) and joins the thread.
  void Stop();

  // Waits until no request is queued or running, up to timeout.
  bool WaitIdle(absl::Duration timeout);

  // Counters for metrics and tests; safe from any thread.
  struct Stats {
    int32_t queued = 0;
    int32_t running = 0;
    int32_t kv_blocks_total = 0;
    int32_t kv_blocks_used = 0;
    int64_t preemptions = 0;
  };
  Stats stats() const;

  // What an observer learns of a request: its tenant, its adapter's cache
  // key (empty: the base model) and kind ("base", "lora", "road", "diablo";
  // "" until the adapter is pinned at admission).
  struct RequestTags {
    const std::string& tenant;
    const std::string& adapter;
    const char* adapter_kind;
  };
  // Called for each request's events; any may be empty. on_submit runs on
  // the submitting thread, the others on the scheduler thread. Must be quick
  // and must not call back into the scheduler. Every submitted request gets
  // exactly one on_finish; `admitted` says whether it ever reached the batch.
  struct Observer {
    std::function<void(const RequestTags&)> on_submit;
    std::function<void(const RequestTags&, double queue_ms)> on_admit;
    std::function<void(const RequestTags&, double ttft_ms)> on_first_token;
    std::function<void(const RequestTags&, double inter_token_ms)> on_token;
    std::function<void(const RequestTags&, const GenerationResult& result, bool admitted)> on_finish;
  };
  void SetObserver(Observer observer);  // before Start()

  int32_t context_length() const { return context_length_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  using Request = ScheduledRequest;

  absl::Status Validate(const GenerationParams& p) const;
  void Loop();
  // Moves queued requests into the batch; those that cannot run (cancelled,
  // past their deadline, adapter failed) go to `done` with their status.
  void Admit(std::vector<std::pair<std::unique_ptr<Request>, absl::Status>>* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_->mu);
  // The queued request to consider next for admission, fairness order,
  // skipping `skip`.
  std::deque<std::unique_ptr<Request>>::iterator NextCandidate(const std::vector<const Request*>& skip)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_->mu);
  void RunStep();
  // Prompt tokens of each prefilling request to run this step (0: wait).
  void AssignPrefillChunks();
  // Gives every request in the step the KV blocks its rows need, preempting
  // the youngest requests (back to the queue, recomputed later) when the
  // cache is full. True when it preempted (chunks must be reassigned).
  bool GrowBlocks();
  // Adds tokens to tenant's virtual counter (fair admission).
  void ChargeTenant(const std::string& tenant, double tokens);
  void FinishRequest(Request& r, FinishReason reason, absl::Status status = absl::OkStatus());

  Engine* engine_;
  const Tokenizer* tokenizer_;
  AdapterCache* adapters_;
  Observer observer_;
  std::vector<int32_t> eos_ids_;
  SchedulerOptions options_;
  int32_t context_length_;
  int32_t vocab_size_;

  std::shared_ptr<RequestHandle::Wake> wake_;  // mutex, condvar and the queue
  std::thread thread_;
  std::atomic<bool> admitting_{true};
  uint64_t next_arrival_ ABSL_GUARDED_BY(wake_->mu) = 0;
  uint64_t seen_events_ ABSL_GUARDED_BY(wake_->mu) = 0;
  bool retry_admission_ = true;  // a request finished since the last admission pass

  // Owned by the scheduler thread.
  std::vector<std::unique_ptr<Request>> running_;
  // KV pages: read-only fields (num_blocks, block_size) are immutable.
  KvBlockManager kv_;
  PlanBuilder builder_;  // flattens each step's BatchPlan for the engine
  std::map<std::string, double> served_tokens_;  // per tenant, for fairness

  std::atomic<int32_t> kv_blocks_used_{0};
  std::atomic<int64_t> preemptions_{0};
};

}  // namespace tessera

#endif  // TESSERA_SERVER_SCHEDULER_SCHEDULER_H_
