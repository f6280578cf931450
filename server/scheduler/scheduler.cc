#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/scheduler/output_text.h"
#include "spdlog/spdlog.h"

namespace tessera {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:  // OpenAI's and vLLM's spelling: EOS is a stop
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

RequestHandle::Wake::Wake() = default;
RequestHandle::Wake::~Wake() = default;

void RequestHandle::Cancel() {
  if (cancelled_.exchange(true)) return;
  MutexLock lock(&wake_->mu);
  ++wake_->events;
  wake_->cv.SignalAll();
}

struct ScheduledRequest {
  std::shared_ptr<RequestHandle> handle;
  GenerationParams params;
  GenerationCallbacks callbacks;
  AdapterPin adapter;  // pinned at admission (it carries the pool slot); empty: base model
  AdapterWant want;    // from submission to admission: the adapter's load starts at once and is kept
  const char* adapter_kind = "";  // for the observer: "base", or the pinned adapter's kind
  uint64_t arrival = 0;       // submission order, for FIFO prefill
  int32_t prompt_done = 0;    // prompt tokens already in the KV cache
  int32_t chunk = 0;          // prompt tokens to run in the current step
  // Tokens to prefill: the prompt, or after a preemption the prompt and every
  // token generated so far (recomputed into fresh KV blocks).
  std::vector<int32_t> replay;
  bool prefilling() const { return prompt_done < static_cast<int32_t>(replay.size()); }
  int32_t max_new = 0;  // after the context-limit clip
  uint64_t seed = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<OutputText> output;
  int32_t kv_len = 0;
  std::vector<int32_t> generated;
  std::string text;
  std::vector<float> prompt_logits;
  absl::Time submitted, scheduled, first_token, last_token;
  // Admitted at least once. A queued request that has started (it was
  // preempted) is past its queue deadline check: its call's deadline cancels it.
  bool started() const { return scheduled != absl::Time(); }
  // Still waiting for its first admission when its deadline passed.
  bool expired(absl::Time now) const { return !started() && now >= params.deadline; }
  Scheduler::RequestTags tags() const {
    return {params.tenant, params.adapter_name.empty() ? params.adapter_id : params.adapter_name, adapter_kind};
  }
};

namespace {
double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }
}  // namespace

Scheduler::Scheduler(Engine* engine, const Tokenizer* tokenizer, std::vector<int32_t> eos_ids,
                     SchedulerOptions options, AdapterCache* adapters)
    : engine_(engine),
      tokenizer_(tokenizer),
      adapters_(adapters),
      eos_ids_(std::move(eos_ids)),
      options_(options),
      context_length_(options.context_length > 0 ? options.context_length
                                                 : engine->model().config.max_position_embeddings),
      vocab_size_(engine->model().config.vocab_size),
      wake_(std::make_shared<RequestHandle::Wake>()),
      kv_(engine->plan_limits().num_blocks, engine->plan_limits().block_size),
      builder_(engine->plan_limits()) {
  if (adapters_) {
    // A finished load or a released pin may let a queued request in.
    std::weak_ptr<RequestHandle::Wake> weak = wake_;
    adapters_->SetListener([weak] {
      if (auto wake = weak.lock()) {
        MutexLock lock(&wake->mu);
        ++wake->events;
        wake->cv.SignalAll();
      }
    });
  }
}

Scheduler::~Scheduler() {
  Stop();
  if (adapters_) adapters_->SetListener(nullptr);
}

void Scheduler::SetObserver(Observer observer) { observer_ = std::move(observer); }

Scheduler::Stats Scheduler::stats() const {
  Stats s;
  {
    MutexLock lock(&wake_->mu);
    s.queued = static_cast<int32_t>(wake_->queue.size());
    s.running = wake_->running;
  }
  s.kv_blocks_total = kv_.num_blocks();
  s.kv_blocks_used = kv_blocks_used_.load();
  s.preemptions = preemptions_.load();
  return s;
}

void Scheduler::Start() {
  thread_ = std::thread([this] { Loop(); });
}

std::shared_ptr<RequestHandle> Scheduler::NewHandle() {
  return std::shared_ptr<RequestHandle>(new RequestHandle(wake_));
}

absl::Status Scheduler::Validate(const GenerationParams& p) const {
  const int64_t n = static_cast<int64_t>(p.prompt_ids.size());
  if (n == 0) {
    return absl::InvalidArgumentError("prompt is empty: send prompt text or at least one token id");
  }
  for (int64_t i = 0; i < n; ++i) {
    if (p.prompt_ids[i] < 0 || p.prompt_ids[i] >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", p.prompt_ids[i], " at index ", i,
                                                     " is outside the vocabulary [0, ", vocab_size_, ")"));
    }
  }
  if (n >= context_length_) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt has ", n, " tokens but the context limit is ", context_length_,
                     " (prompt plus at least one new token); shorten the prompt"));
  }
  if (p.max_new_tokens < 1 || p.max_new_tokens > options_.max_new_tokens_limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens must be in [1, ", options_.max_new_tokens_limit, "], got ", p.max_new_tokens));
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be >= 0 (0 is greedy), got ", p.temperature));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0 (0 disables it), got ", p.top_k));
  }
  if (static_cast<int32_t>(p.stop_strings.size()) > options_.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", options_.max_stop_strings,
                                                   " stop strings are allowed, got ", p.stop_strings.size()));
  }
  for (const std::string& s : p.stop_strings) {
    if (s.empty()) return absl::InvalidArgumentError("stop strings must not be empty");
  }
  for (int32_t id : p.stop_token_ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop token id ", id, " is outside the vocabulary [0, ", vocab_size_, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Scheduler::Submit(std::shared_ptr<RequestHandle> handle, GenerationParams params,
                               GenerationCallbacks callbacks) {
  if (!admitting_.load()) {
    return absl::UnavailableError("server is shutting down and admits no new requests");
  }
  if (absl::Status s = Validate(params); !s.ok()) return s;
  auto r = std::make_unique<Request>();
  if (!params.adapter_id.empty() && !adapters_) {
    return absl::NotFoundError(
        absl::StrCat("adapter '", params.adapter_id,
                     "' is not loaded on this server (no adapters are loaded); omit the "
                     "adapter to use the base model"));
  }
  const int32_t prompt = static_cast<int32_t>(params.prompt_ids.size());
  r->max_new = std::min(params.max_new_tokens, context_length_ - prompt);
  const int32_t blocks = kv_.BlocksFor(prompt + r->max_new);
  if (blocks > kv_.num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request needs ", prompt + r->max_new, " KV cache tokens but the cache holds ",
        static_cast<int64_t>(kv_.num_blocks()) * kv_.block_size(),
        "; raise --kv_cache_tokens or send a shorter request"));
  }
  r->seed = params.seed ? *params.seed
                        : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  r->sampler =
      std::make_unique<Sampler>(SamplingConfig{params.temperature, params.top_k, params.top_p, r->seed});
  r->output = std::make_unique<OutputText>(*tokenizer_, params.stop_strings);
  r->replay = params.prompt_ids;
  r->handle = std::move(handle);
  r->params = std::move(params);
  r->callbacks = std::move(callbacks);
  r->submitted = absl::Now();
  // Prefetch from the queue: a non-resident adapter starts loading now, while
  // the request waits for a seat in the batch.
  if (!r->params.adapter_id.empty()) r->want = adapters_->Want(r->params.adapter_id);
  if (r->params.adapter_id.empty()) r->adapter_kind = "base";
  // The observer hears of the request before the scheduler thread can
  // finish it; a refused one is reported finished at once.
  if (observer_.on_submit) observer_.on_submit(r->tags());
  absl::Status refused;
  {
    MutexLock lock(&wake_->mu);
    r->arrival = next_arrival_++;
    if (wake_->stop) {
      refused = absl::UnavailableError("server is shutting down and admits no new requests");
    } else if (static_cast<int32_t>(wake_->queue.size()) >= options_.max_queue) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("request queue is full (", options_.max_queue, " waiting); retry later"));
    } else {
      wake_->queue.push_back(std::move(r));
      ++wake_->events;
      wake_->cv.SignalAll();
      return absl::OkStatus();
    }
  }
  if (observer_.on_finish) {
    GenerationResult res;
    res.status = refused;
    observer_.on_finish(r->tags(), res, /*admitted=*/false);
  }
  return refused;
}

void Scheduler::StopAdmitting() { admitting_.store(false); }

void Scheduler::Stop() {
  admitting_.store(false);
  {
    MutexLock lock(&wake_->mu);
    wake_->stop = true;
    wake_->cv.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

bool Scheduler::WaitIdle(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  MutexLock lock(&wake_->mu);
  while (!(wake_->queue.empty() && wake_->running == 0)) {
    if (absl::Now() >= deadline) return false;
    wake_->cv.WaitWithDeadline(&wake_->mu, deadline);
  }
  return true;
}

std::deque<std::unique_ptr<ScheduledRequest>>::iterator Scheduler::NextCandidate(
    const std::vector<const Request*>& skip) {
  auto& queue = wake_->queue;
  auto best = queue.end();
  double best_served = 0;
  for (auto it = queue.begin(); it != queue.end(); ++it) {
    if (std::find(skip.begin(), skip.end(), it->get()) != skip.end()) continue;
    auto served = served_tokens_.find((*it)->params.tenant);
    const double tokens = served == served_tokens_.end() ? -1 : served->second;
    // The queue is in arrival order, so the first request of the least-served
    // tenant is that tenant's oldest.
    if (best == queue.end() || tokens < best_served) {
      best = it;
      best_served = tokens;
    }
  }
  return best;
}

void Scheduler::ChargeTenant(const std::string& tenant, double tokens) {
  // Virtual token counters. A tenant with nothing running starts level with
  // the least-served tenant that has something running, so neither an idle
  // tenant's stale low counter nor a newcomer can monopolise admission.
  double floor = std::numeric_limits<double>::infinity();
  bool tenant_running = false;
  for (const auto& r : running_) {
    floor = std::min(floor, served_tokens_[r->params.tenant]);
    tenant_running = tenant_running || r->params.tenant == tenant;
  }
  double& served = served_tokens_[tenant];
  if (!tenant_running && std::isfinite(floor)) served = std::max(served, floor);
  served += tokens;
}

void Scheduler::Admit(std::vector<std::pair<std::unique_ptr<Request>, absl::Status>>* done) {
  auto& queue = wake_->queue;
  const absl::Time now = absl::Now();
  for (auto it = queue.begin(); it != queue.end();) {
    Request& r = **it;
    absl::Status status;
    if (r.handle->cancelled()) {
      status = absl::OkStatus();
    } else if (r.expired(now)) {
      status = absl::DeadlineExceededError(absl::StrCat(
          "deadline passed after ", absl::StrFormat("%.0f", Ms(now - r.submitted)),
          " ms in the queue, before the request could start; retry with a longer deadline or when the server "
          "is less busy"));
    } else {
      ++it;
      continue;
    }
    done->emplace_back(std::move(*it), std::move(status));
    it = queue.erase(it);
  }
  KvBlockManager& kv = kv_;
  std::vector<const Request*> skip;  // waiting for their adapter
  while (static_cast<int32_t>(running_.size()) < options_.max_batch_size) {
    auto it = NextCandidate(skip);
    if (it == queue.end()) break;
    Request& r = **it;
    // Blocks for what it prefills and its first new token; decode steps
    // take more blocks as they go (preempting the youngest when none is free).
    const int32_t need = kv.BlocksFor(static_cast<int64_t>(r.replay.size()) + 1);
    if (need > kv.free_blocks()) break;  // the fairest request waits for memory; none overtakes it
    if (!r.params.adapter_id.empty() && !r.adapter) {  // a preempted request keeps its pin
      absl::StatusOr<AdapterPin> pin = adapters_->TryPin(r.params.adapter_id);
      if (!pin.ok() && IsNotResident(pin.status())) {
        skip.push_back(&r);  // loading on the cache's thread; others go first
        continue;
      }
      if (!pin.ok()) {
        done->emplace_back(std::move(*it), pin.status());
        queue.erase(it);
        continue;
      }
      r.adapter = *std::move(pin);
      r.adapter_kind = AdapterKindName(r.adapter->kind);
      r.want.reset();
    }
    if (absl::Status s = kv.Append(r.arrival, need); !s.ok()) {  // cannot happen: need <= free_blocks()
      spdlog::error("KV cache: {}", s.ToString());
      break;
    }
    if (!r.started()) {  // first admission (not a preempted request coming back)
      r.scheduled = now;
      ChargeTenant(r.params.tenant, static_cast<double>(r.params.prompt_ids.size()) + r.max_new);
      if (observer_.on_admit) observer_.on_admit(r.tags(), Ms(now - r.submitted));
    }
    running_.push_back(std::move(*it));
    queue.erase(it);
  }
  // Forget tenants with nothing queued or running, so the map stays small;
  // keep the floor so a returning tenant starts level with the others.
  if (queue.empty() && running_.empty()) served_tokens_.clear();
  wake_->running = static_cast<int32_t>(running_.size());
  kv_blocks_used_.store(kv.used_blocks());
}

void Scheduler::Loop() {
  while (true) {
    std::vector<std::pair<std::unique_ptr<Request>, absl::Status>> done;
    bool stop;
    {
      MutexLock lock(&wake_->mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_->mu) {
        if (wake_->stop || !running_.empty()) return true;
        for (const auto& r : wake_->queue) {
          if (r->handle->cancelled() || r->expired(absl::Now())) return true;
        }
        return false;
      };
      // With nothing running and only queued requests that the last
      // admission pass could not take (waiting for an adapter load), sleep
      // until an event (submission, cancellation, finished load, released
      // pin), a finished request, or the earliest queued deadline.
      while (!ready() && (wake_->queue.empty() || (!retry_admission_ && wake_->events == seen_events_))) {
        absl::Time earliest = absl::InfiniteFuture();
        for (const auto& r : wake_->queue) {
          if (!r->started()) earliest = std::min(earliest, r->params.deadline);
        }
        if (earliest == absl::InfiniteFuture()) {
          wake_->cv.Wait(&wake_->mu);
        } else {
          wake_->cv.WaitWithDeadline(&wake_->mu, earliest);
        }
      }
      seen_events_ = wake_->events;
      retry_admission_ = false;
      stop = wake_->stop;
      if (stop) {
        for (auto& r : wake_->queue) done.emplace_back(std::move(r), absl::OkStatus());
        wake_->queue.clear();
      } else {
        Admit(&done);
      }
    }
    for (auto& [r, status] : done) FinishRequest(*r, FinishReason::kCancelled, std::move(status));
    if (stop) {
      for (auto& r : running_) FinishRequest(*r, FinishReason::kCancelled);
      running_.clear();
      MutexLock lock(&wake_->mu);
      wake_->running = 0;
      wake_->cv.SignalAll();
      return;
    }
    // Drop running requests whose client went away.
    for (auto& r : running_) {
      if (r->handle->cancelled()) FinishRequest(*r, FinishReason::kCancelled);
    }
    std::erase_if(running_, [](const std::unique_ptr<Request>& r) { return r->handle == nullptr; });
    if (!running_.empty()) RunStep();
    if (options_.testing_step_delay > absl::ZeroDuration()) absl::SleepFor(options_.testing_step_delay);
    MutexLock lock(&wake_->mu);
    wake_->running = static_cast<int32_t>(running_.size());
    wake_->cv.SignalAll();
  }
}

void Scheduler::AssignPrefillChunks() {
  int64_t budget = options_.max_step_tokens;
  std::vector<Request*> prefilling;
  for (auto& r : running_) {
    if (r->prefilling()) {
      prefilling.push_back(r.get());
    } else {
      --budget;  // one decode row
    }
  }
  std::sort(prefilling.begin(), prefilling.end(),
            [](Request* a, Request* b) { return a->arrival < b->arrival; });
  for (Request* r : prefilling) {
    const int64_t remaining = static_cast<int64_t>(r->replay.size()) - r->prompt_done;
    r->chunk = static_cast<int32_t>(std::clamp<int64_t>(budget, 0, remaining));
    budget -= r->chunk;
  }
}

bool Scheduler::GrowBlocks() {
  KvBlockManager& kv = kv_;
  // Oldest first, so that the youngest are the ones preempted.
  std::vector<Request*> order;
  for (auto& r : running_) order.push_back(r.get());
  std::sort(order.begin(), order.end(), [](Request* a, Request* b) { return a->arrival < b->arrival; });
  std::vector<Request*> preempted;
  for (Request* r : order) {
    if (std::find(preempted.begin(), preempted.end(), r) != preempted.end()) continue;
    const int32_t rows = r->prefilling() ? r->chunk : 1;
    if (rows == 0) continue;
    const int32_t need =
        kv.BlocksFor(static_cast<int64_t>(r->kv_len) + rows) - static_cast<int32_t>(kv.Table(r->arrival).size());
    while (need > kv.free_blocks()) {
      // Preempt by recompute: the youngest running request gives its blocks
      // back and returns to the queue to prefill prompt + generated again.
      Request* victim = nullptr;
      for (auto it = order.rbegin(); it != order.rend(); ++it) {
        if (std::find(preempted.begin(), preempted.end(), *it) == preempted.end() && kv.Holds((*it)->arrival)) {
          victim = *it;
          break;
        }
      }
      if (victim == nullptr) break;
      preempted.push_back(victim);
      kv.Release(victim->arrival);
      if (victim == r) break;
    }
    if (std::find(preempted.begin(), preempted.end(), r) != preempted.end()) continue;
    if (need > 0) {
      if (!kv.Append(r->arrival, need).ok()) {  // cannot happen: a lone request always fits (checked in Submit)
        spdlog::error("KV cache exhausted with nothing left to preempt");
        return false;
      }
    }
  }
  if (preempted.empty()) return false;
  std::vector<std::unique_ptr<Request>> back;
  for (auto it = running_.begin(); it != running_.end();) {
    if (std::find(preempted.begin(), preempted.end(), it->get()) == preempted.end()) {
      ++it;
      continue;
    }
    Request& r = **it;
    r.replay = r.params.prompt_ids;
    // The last generated token is the next step's input, so it is replayed
    // too: the prefill's last row then yields the token after it.
    r.replay.insert(r.replay.end(), r.generated.begin(), r.generated.end());
    r.prompt_done = 0;
    r.chunk = 0;
    r.kv_len = 0;
    for (auto& other : running_) other->chunk = 0;  // reassigned by RunStep
    preemptions_.fetch_add(1);
    spdlog::debug("request {} preempted after {} tokens; it will recompute {} tokens", r.params.request_id,
                  r.generated.size(), r.replay.size());
    back.push_back(std::move(*it));
    it = running_.erase(it);
  }
  MutexLock lock(&wake_->mu);
  // Front of the queue in arrival order, so they are the first readmitted.
  std::sort(back.begin(), back.end(), [](const auto& a, const auto& b) { return a->arrival < b->arrival; });
  for (auto it = back.rbegin(); it != back.rend(); ++it) wake_->queue.push_front(std::move(*it));
  wake_->running = static_cast<int32_t>(running_.size());
  return true;
}

void Scheduler::RunStep() {
  // Preempting frees prefill budget, so chunks are reassigned until every
  // request in the step has its blocks.
  do {
    AssignPrefillChunks();
  } while (GrowBlocks());
  kv_blocks_used_.store(kv_.used_blocks());
  const bool any_rows = std::any_of(running_.begin(), running_.end(),
                                    [](const auto& r) { return !r->prefilling() || r->chunk > 0; });
  if (!any_rows) return;
  // Sequences of the same adapter sit next to each other, so each adapter is
  // one segment (stable: FIFO order within an adapter). A pin's slot is
  // fixed while it is held, so the plan names pool slots directly.
  std::stable_sort(running_.begin(), running_.end(),
                   [](const auto& a, const auto& b) { return a->adapter.slot() < b->adapter.slot(); });
  BatchPlan plan;
  std::vector<Request*> in_plan;
  for (auto& r : running_) {
    if (r->prefilling() && r->chunk == 0) continue;  // waits for budget
    SequencePlan sp;
    sp.query_begin = plan.num_tokens();
    sp.kv_len = r->kv_len;
    const absl::Span<const int32_t> table = kv_.Table(r->arrival);
    sp.block_table.assign(table.begin(), table.end());
    if (r->prefilling()) {
      const auto& ids = r->replay;
      plan.token_ids.insert(plan.token_ids.end(), ids.begin() + r->prompt_done,
                            ids.begin() + r->prompt_done + r->chunk);
      for (int32_t i = 0; i < r->chunk; ++i) plan.positions.push_back(r->kv_len + i);
      sp.query_len = r->chunk;
      sp.needs_logits = r->prompt_done + r->chunk == static_cast<int32_t>(ids.size());
    } else {
      plan.token_ids.push_back(r->generated.back());
      plan.positions.push_back(r->kv_len);
      sp.query_len = 1;
      sp.needs_logits = true;
    }
    if (const int32_t slot = r->adapter.slot(); slot >= 0) {
      if (!plan.adapter_segments.empty() && plan.adapter_segments.back().slot == slot &&
          plan.adapter_segments.back().row_begin + plan.adapter_segments.back().row_count == sp.query_begin) {
        plan.adapter_segments.back().row_count += sp.query_len;
      } else {
        plan.adapter_segments.push_back({sp.query_begin, sp.query_len, slot});
      }
    }
    plan.sequences.push_back(std::move(sp));
    in_plan.push_back(r.get());
  }
  absl::StatusOr<PlanView> view = builder_.Build(plan, engine_->slot_ops());
  absl::StatusOr<absl::Span<const float>> logits =
      view.ok() ? engine_->Step(*view) : absl::StatusOr<absl::Span<const float>>(view.status());
  if (!logits.ok()) {
    const absl::Status& s = logits.status();
    spdlog::error("engine step failed for {} request(s): {}", running_.size(), s.ToString());
    for (auto& r : running_) {
      FinishRequest(*r, FinishReason::kCancelled,
                    absl::InternalError(absl::StrCat("engine failure: ", s.message())));
    }
    running_.clear();
    return;
  }
  const absl::Time now = absl::Now();
  size_t logit_row = 0;
  for (size_t i = 0; i < in_plan.size(); ++i) {
    Request& r = *in_plan[i];
    r.kv_len += plan.sequences[i].query_len;
    if (r.prefilling()) {
      r.prompt_done += r.chunk;
      r.chunk = 0;
      if (r.prefilling()) continue;  // more prompt chunks to come
    }
    const float* row = logits->data() + (logit_row++) * vocab_size_;
    if (r.generated.empty() && r.params.return_prompt_logits) r.prompt_logits.assign(row, row + vocab_size_);
    const int32_t token = r.sampler->Sample(row, vocab_size_);
    if (r.generated.empty()) {
      r.first_token = now;
      if (observer_.on_first_token) observer_.on_first_token(r.tags(), Ms(now - r.submitted));
    } else if (observer_.on_token) {
      observer_.on_token(r.tags(), Ms(now - r.last_token));
    }
    r.last_token = now;
    r.generated.push_back(token);

    std::optional<FinishReason> finish;
    GenerationDelta delta;
    delta.token_ids.push_back(token);
    const bool is_eos =
        !r.params.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
    const bool is_stop_token = std::find(r.params.stop_token_ids.begin(), r.params.stop_token_ids.end(),
                                         token) != r.params.stop_token_ids.end();
    if (is_eos) {
      finish = FinishReason::kEos;
    } else if (is_stop_token) {
      finish = FinishReason::kStop;
    } else {
      delta.text = r.output->Append(token);
      if (r.output->stopped()) finish = FinishReason::kStop;
    }
    if (!finish && static_cast<int32_t>(r.generated.size()) >= r.max_new) finish = FinishReason::kLength;
    if (finish && *finish != FinishReason::kStop) delta.text += r.output->Flush();
    r.text += delta.text;
    if (r.callbacks.on_delta) r.callbacks.on_delta(delta);
    if (finish) FinishRequest(r, *finish);
  }
  std::erase_if(running_, [](const std::unique_ptr<Request>& r) { return r->handle == nullptr; });
}

void Scheduler::FinishRequest(Request& r, FinishReason reason, absl::Status status) {
  retry_admission_ = true;  // its KV blocks and batch slot may let a queued request in
  if (kv_.Holds(r.arrival)) {
    kv_.Release(r.arrival);
    kv_blocks_used_.store(kv_.used_blocks());
  }
  r.adapter.reset();  // releases the pin
  if (reason == FinishReason::kCancelled) r.text += r.output->Flush();
  const absl::Time end = absl::Now();
  GenerationResult res;
  res.status = std::move(status);
  res.token_ids = std::move(r.generated);
  res.text = std::move(r.text);
  res.finish_reason = reason;
  res.prompt_tokens = static_cast<int32_t>(r.params.prompt_ids.size());
  res.completion_tokens = static_cast<int32_t>(res.token_ids.size());
  const absl::Time scheduled = r.started() ? r.scheduled : end;
  res.queue_ms = Ms(scheduled - r.submitted);
  res.time_to_first_token_ms = res.token_ids.empty() ? 0 : Ms(r.first_token - r.submitted);
  res.total_ms = Ms(end - r.submitted);
  res.seed = r.seed;
  res.prompt_logits = std::move(r.prompt_logits);
  spdlog::debug("request {} finished: {} after {} tokens, {:.1f} ms", r.params.request_id,
                FinishReasonName(reason), res.completion_tokens, res.total_ms);
  if (observer_.on_finish) observer_.on_finish(r.tags(), res, r.started());
  if (r.callbacks.on_finish) r.callbacks.on_finish(std::move(res));
  r.handle.reset();  // marks the request finished
}

}  // namespace tessera
