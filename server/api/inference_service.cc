#include "server/api/inference_service.h"

#include <deque>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/exception_guard.h"
#include "server/api/call_auth.h"
#include "spdlog/spdlog.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<InflightCounter::Slot>> InflightCounter::Acquire(const std::string& tenant) {
  MutexLock lock(&mu_);
  if (in_flight_ >= total_) {
    return absl::ResourceExhaustedError(absl::StrCat("the server has ", in_flight_,
                                                     " requests in flight, its limit (--max-requests-total); "
                                                     "retry with backoff"));
  }
  int32_t& mine = by_tenant_[tenant];
  if (mine >= per_tenant_) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant, "' has ", mine,
                                                     " requests in flight, its limit (--max-requests-per-tenant); "
                                                     "wait for some to finish"));
  }
  ++mine;
  ++in_flight_;
  return std::make_unique<Slot>(this, tenant);
}

void InflightCounter::Release(const std::string& tenant) {
  MutexLock lock(&mu_);
  --in_flight_;
  auto it = by_tenant_.find(tenant);
  if (it != by_tenant_.end() && --it->second <= 0) by_tenant_.erase(it);
}

namespace {

using Env = InferenceService::Env;

// Cheap checks on the gRPC thread, before any work is queued: the API key
// and the tenant's and server's in-flight limits.
absl::StatusOr<Tenant> Admit(const Env& env, const grpc::CallbackServerContext& context,
                             std::unique_ptr<InflightCounter::Slot>* slot) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*env.tenants, context);
  if (!tenant.ok()) return tenant.status();
  absl::StatusOr<std::unique_ptr<InflightCounter::Slot>> acquired = env.inflight->Acquire(tenant->id);
  if (!acquired.ok()) return acquired.status();
  *slot = *std::move(acquired);
  return tenant;
}

// Converts the request (tokenizing it), resolves its adapter and queues it;
// an error is the status to Finish with. Runs on a service worker thread.
absl::Status ConvertAndSubmit(const Env& env, const Tenant& tenant_in, const grpc::CallbackServerContext& context,
                              const v1::GenerateRequest& request, std::shared_ptr<RequestHandle> handle,
                              GenerationCallbacks callbacks) {
  const Tenant* tenant = &tenant_in;
  if (context.IsCancelled()) return absl::CancelledError("the call was cancelled before it started");
  absl::StatusOr<GenerationParams> params = ToGenerationParams(request, *env.tokenizer, env.limits, env.chat_template);
  if (!params.ok()) return params.status();
  params->tenant = tenant->id;
  if (!params->adapter_id.empty()) {
    absl::StatusOr<ResolvedAdapter> adapter = env.catalog->ResolveForUse(*tenant, params->adapter_id);
    if (!adapter.ok()) return adapter.status();
    params->adapter_id = adapter->key;
    params->adapter_name = adapter->name;
  }
  if (context.deadline() != std::chrono::system_clock::time_point::max()) {
    params->deadline = absl::FromChrono(context.deadline());
  }
  return env.scheduler->Submit(std::move(handle), *std::move(params), std::move(callbacks));
}

absl::Status GuardedSubmit(const Env& env, const Tenant& tenant, const grpc::CallbackServerContext& context,
                           const v1::GenerateRequest& request, std::shared_ptr<RequestHandle> handle,
                           GenerationCallbacks callbacks) {
  return GuardExceptions("Generate", [&] {
    return ConvertAndSubmit(env, tenant, context, request, std::move(handle), std::move(callbacks));
  });
}

class GenerateReactor final : public grpc::ServerUnaryReactor {
 public:
  GenerateReactor(const Env& env, WorkQueue* workers, const grpc::CallbackServerContext* context,
                  const v1::GenerateRequest* request, v1::GenerateResponse* response)
      : handle_(env.scheduler->NewHandle()) {
    absl::StatusOr<Tenant> tenant = Admit(env, *context, &slot_);
    if (!tenant.ok()) {
      Finish(ToGrpcStatus(tenant.status()));
      return;
    }
    // The reactor lives until OnDone, which follows Finish: the task may use it.
    workers->Post([this, env, context, request, response, tenant = *std::move(tenant)] {
      GenerationCallbacks cb;
      cb.on_finish = [this, response](GenerationResult result) {
        if (!result.status.ok()) {
          Finish(ToGrpcStatus(result.status));
          return;
        }
        FillResponse(result, response);
        Finish(grpc::Status::OK);
      };
      absl::Status s = GuardedSubmit(env, tenant, *context, *request, handle_, std::move(cb));
      if (!s.ok()) Finish(ToGrpcStatus(s));
    });
  }

  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<RequestHandle> handle_;
  std::unique_ptr<InflightCounter::Slot> slot_;  // set in the constructor
};

class GenerateStreamReactor final : public grpc::ServerWriteReactor<v1::GenerateStreamResponse> {
 public:
  GenerateStreamReactor(const Env& env, WorkQueue* workers, const grpc::CallbackServerContext* context,
                        const v1::GenerateRequest* request)
      : handle_(env.scheduler->NewHandle()) {
    absl::StatusOr<Tenant> tenant = Admit(env, *context, &slot_);
    if (!tenant.ok()) {
      Finish(ToGrpcStatus(tenant.status()));
      return;
    }
    workers->Post([this, env, context, request, tenant = *std::move(tenant)] {
      GenerationCallbacks cb;
      cb.on_delta = [this](const GenerationDelta& d) {
        v1::GenerateStreamResponse m;
        m.set_text_delta(d.text);
        m.mutable_token_ids()->Assign(d.token_ids.begin(), d.token_ids.end());
        Enqueue(std::move(m), nullptr);
      };
      cb.on_finish = [this](GenerationResult result) {
        if (!result.status.ok()) {
          grpc::Status status = ToGrpcStatus(result.status);
          Enqueue(std::nullopt, &status);
          return;
        }
        v1::GenerateStreamResponse m;
        FillFinalStreamMessage(result, &m);
        grpc::Status ok = grpc::Status::OK;
        Enqueue(std::move(m), &ok);
      };
      absl::Status s = GuardedSubmit(env, tenant, *context, *request, handle_, std::move(cb));
      if (!s.ok()) {
        grpc::Status status = ToGrpcStatus(s);
        Enqueue(std::nullopt, &status);
      }
    });
  }

  void OnWriteDone(bool ok) override {
    Step step;
    {
      MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {  // the client is gone: stop generating, drop what is queued
        write_failed_ = true;
        queue_.clear();
        handle_->Cancel();
      }
      step = NextStep();
    }
    Perform(step);
  }
  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  // What to do after releasing mu_: one write in flight at a time; Finish
  // after the last write.
  struct Step {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    grpc::Status status;
  };

  // Queues a message and/or the final status, then writes what it can.
  void Enqueue(std::optional<v1::GenerateStreamResponse> m, const grpc::Status* final_status) {
    Step step;
    {
      MutexLock lock(&mu_);
      if (m && !write_failed_) queue_.push_back(std::move(*m));
      if (final_status) final_status_ = *final_status;
      step = NextStep();
    }
    Perform(step);
  }

  Step NextStep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    if (writing_ || finish_called_) return step;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      step.action = Step::kWrite;
    } else if (final_status_) {
      finish_called_ = true;
      step.action = Step::kFinish;
      step.status = *final_status_;
    }
    return step;
  }

  // The gRPC calls, made without holding mu_.
  void Perform(const Step& step) {
    if (step.action == Step::kWrite) StartWrite(&current_);
    if (step.action == Step::kFinish) Finish(step.status);
  }

  std::shared_ptr<RequestHandle> handle_;
  std::unique_ptr<InflightCounter::Slot> slot_;  // set in the constructor
  Mutex mu_;
  std::deque<v1::GenerateStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  v1::GenerateStreamResponse current_;  // owned by the write in flight
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// Admits the call, then runs `work` on a worker thread and finishes with its
// status (a throw becomes InternalError).
class WorkReactor final : public grpc::ServerUnaryReactor {
 public:
  WorkReactor(const Env& env, WorkQueue* workers, const grpc::CallbackServerContext* context, const char* what,
              std::function<absl::Status()> work) {
    absl::StatusOr<Tenant> tenant = Admit(env, *context, &slot_);
    if (!tenant.ok()) {
      Finish(ToGrpcStatus(tenant.status()));
      return;
    }
    workers->Post([this, what, work = std::move(work)] { Finish(ToGrpcStatus(GuardExceptions(what, work))); });
  }
  void OnDone() override { delete this; }

 private:
  std::unique_ptr<InflightCounter::Slot> slot_;
};

}  // namespace

InferenceService::InferenceService(Scheduler* scheduler, const Tokenizer* tokenizer,
                                   const TenantDirectory* tenants, const AdapterCatalog* catalog,
                                   v1::ServerInfoResponse info, InferenceLimits limits,
                                   const ChatTemplate* chat_template)
    : env_{scheduler, tokenizer, tenants, catalog, limits.request, &inflight_, chat_template},
      info_(std::move(info)),
      inflight_(limits.max_requests_per_tenant, limits.max_requests_total),
      workers_(limits.worker_threads) {}

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request,
                                                     v1::GenerateResponse* response) {
  return new GenerateReactor(env_, &workers_, context, request, response);
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* InferenceService::GenerateStream(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateStreamReactor(env_, &workers_, context, request);
}

grpc::ServerUnaryReactor* InferenceService::ServerInfo(grpc::CallbackServerContext* context,
                                                       const v1::ServerInfoRequest* request,
                                                       v1::ServerInfoResponse* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*env_.tenants, *context);
  if (tenant.ok()) *response = info_;
  return FinishUnary(context, tenant.status());
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const v1::TokenizeRequest* request,
                                                     v1::TokenizeResponse* response) {
  const Env& env = env_;
  return new WorkReactor(env_, &workers_, context, "Tokenize", [&env, request, response]() -> absl::Status {
    if (static_cast<int64_t>(request->text().size()) > env.limits.max_prompt_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("text is ", request->text().size(),
                                                     " bytes, over the limit of ", env.limits.max_prompt_bytes,
                                                     " (--max-prompt-bytes)"));
    }
    absl::StatusOr<std::vector<int32_t>> ids = env.tokenizer->Encode(request->text(), request->add_special_tokens());
    if (!ids.ok()) return ids.status();
    response->mutable_ids()->Add(ids->begin(), ids->end());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* context,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  const Env& env = env_;
  return new WorkReactor(env_, &workers_, context, "Detokenize", [&env, request, response]() -> absl::Status {
    const int64_t max_ids = env.limits.context_length > 0 ? env.limits.context_length : int64_t{1} << 20;
    if (request->ids_size() > max_ids) {
      return absl::InvalidArgumentError(
          absl::StrCat(request->ids_size(), " ids, more than the context length of ", max_ids));
    }
    const int32_t vocab = env.tokenizer->vocab_size();
    for (const int32_t id : request->ids()) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
      }
    }
    response->set_text(env.tokenizer->Decode({request->ids().begin(), request->ids().end()},
                                             request->skip_special_tokens()));
    return absl::OkStatus();
  });
}

}  // namespace tessera
