#include "server/api/inference_service.h"

#include <deque>
#include <mutex>

#include "server/api/call_auth.h"
#include "server/api/request_conversion.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

// What every Generate call needs besides its request.
struct CallEnv {
  Scheduler* scheduler;
  const Tokenizer* tokenizer;
  const TenantDirectory* tenants;
  const AdapterCatalog* catalog;
};

// Authenticates, converts the request, resolves its adapter and queues it;
// an error is the status to Finish with.
absl::Status ConvertAndSubmit(const CallEnv& env, const grpc::CallbackServerContext& context,
                              const v1::GenerateRequest& request, std::shared_ptr<RequestHandle> handle,
                              GenerationCallbacks callbacks) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*env.tenants, context);
  if (!tenant.ok()) return tenant.status();
  absl::StatusOr<GenerationParams> params = ToGenerationParams(request, *env.tokenizer);
  if (!params.ok()) return params.status();
  params->tenant = tenant->id;
  if (!params->adapter_id.empty()) {
    absl::StatusOr<ResolvedAdapter> adapter = env.catalog->ResolveForUse(*tenant, params->adapter_id);
    if (!adapter.ok()) return adapter.status();
    params->adapter_id = adapter->key;
    params->adapter_bytes = adapter->bytes;
  }
  if (context.deadline() != std::chrono::system_clock::time_point::max()) {
    params->deadline = absl::FromChrono(context.deadline());
  }
  return env.scheduler->Submit(std::move(handle), *std::move(params), std::move(callbacks));
}

class GenerateReactor final : public grpc::ServerUnaryReactor {
 public:
  GenerateReactor(const CallEnv& env, const grpc::CallbackServerContext& context,
                  const v1::GenerateRequest& request, v1::GenerateResponse* response)
      : handle_(env.scheduler->NewHandle()) {
    GenerationCallbacks cb;
    cb.on_finish = [this, response](GenerationResult result) {
      if (!result.status.ok()) {
        Finish(ToGrpcStatus(result.status));
        return;
      }
      FillResponse(result, response);
      Finish(grpc::Status::OK);
    };
    absl::Status s = ConvertAndSubmit(env, context, request, handle_, std::move(cb));
    if (!s.ok()) Finish(ToGrpcStatus(s));
  }

  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<RequestHandle> handle_;
};

class GenerateStreamReactor final : public grpc::ServerWriteReactor<v1::GenerateStreamResponse> {
 public:
  GenerateStreamReactor(const CallEnv& env, const grpc::CallbackServerContext& context,
                        const v1::GenerateRequest& request)
      : handle_(env.scheduler->NewHandle()) {
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
    absl::Status s = ConvertAndSubmit(env, context, request, handle_, std::move(cb));
    if (!s.ok()) Finish(ToGrpcStatus(s));
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {  // the client is gone: stop generating, drop what is queued
      write_failed_ = true;
      queue_.clear();
      handle_->Cancel();
    }
    Pump(lock);
  }
  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  // Queues a message and/or the final status, then writes what it can.
  void Enqueue(std::optional<v1::GenerateStreamResponse> m, const grpc::Status* final_status) {
    std::unique_lock<std::mutex> lock(mu_);
    if (m && !write_failed_) queue_.push_back(std::move(*m));
    if (final_status) final_status_ = *final_status;
    Pump(lock);
  }

  // One write in flight at a time; Finish after the last write. The gRPC
  // calls are made without holding mu_.
  void Pump(std::unique_lock<std::mutex>& lock) {
    if (writing_ || finish_called_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      lock.unlock();
      StartWrite(&current_);
      return;
    }
    if (final_status_) {
      finish_called_ = true;
      grpc::Status status = *final_status_;
      lock.unlock();
      Finish(status);
    }
  }

  std::shared_ptr<RequestHandle> handle_;
  std::mutex mu_;
  std::deque<v1::GenerateStreamResponse> queue_;  // guarded by mu_
  v1::GenerateStreamResponse current_;            // owned by the write in flight
  std::optional<grpc::Status> final_status_;      // guarded by mu_
  bool writing_ = false;                          // guarded by mu_
  bool write_failed_ = false;                     // guarded by mu_
  bool finish_called_ = false;                    // guarded by mu_
};

}  // namespace

InferenceService::InferenceService(Scheduler* scheduler, const Tokenizer* tokenizer,
                                   const TenantDirectory* tenants, const AdapterCatalog* catalog,
                                   v1::ServerInfoResponse info)
    : scheduler_(scheduler),
      tokenizer_(tokenizer),
      tenants_(tenants),
      catalog_(catalog),
      info_(std::move(info)) {}

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request,
                                                     v1::GenerateResponse* response) {
  return new GenerateReactor({scheduler_, tokenizer_, tenants_, catalog_}, *context, *request, response);
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* InferenceService::GenerateStream(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateStreamReactor({scheduler_, tokenizer_, tenants_, catalog_}, *context, *request);
}

grpc::ServerUnaryReactor* InferenceService::ServerInfo(grpc::CallbackServerContext* context,
                                                       const v1::ServerInfoRequest* request,
                                                       v1::ServerInfoResponse* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (tenant.ok()) *response = info_;
  return FinishUnary(context, tenant.status());
}

}  // namespace tessera
