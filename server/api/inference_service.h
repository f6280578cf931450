// tessera.v1.Inference on the gRPC callback API. Reactors only translate and
// post work to the Scheduler; tokens come back through its callbacks. Each
// reactor owns a RequestHandle, so a client cancellation (OnCancel) or a
// failed stream write cancels the request and frees its KV blocks; Finish is
// called exactly once.
//
// Authentication, request checks and tokenization run on the service's own
// worker threads, never on gRPC's callback threads, so a large prompt cannot
// hold up other calls. Each tenant may have at most
// InferenceLimits::max_requests_per_tenant calls in flight, and the server
// max_requests_total; beyond them a call gets RESOURCE_EXHAUSTED.
//
// Thread safety: all methods may be called concurrently by gRPC.
#ifndef TESSERA_SERVER_API_INFERENCE_SERVICE_H_
#define TESSERA_SERVER_API_INFERENCE_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "common/mutex.h"
#include "common/work_queue.h"
#include "server/api/adapter_catalog.h"
#include "server/api/request_conversion.h"
#include "server/api/tenants.h"
#include "model/tokenizer.h"
#include "server/scheduler/scheduler.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera {

struct InferenceLimits {
  RequestLimits request;
  int32_t max_requests_per_tenant = 1024;  // --max-requests-per-tenant
  int32_t max_requests_total = 4096;       // --max-requests-total
  int32_t worker_threads = 2;              // tokenization and request checks
};

// Counts a tenant's calls in flight; a Slot releases its count when destroyed.
class InflightCounter {
 public:
  InflightCounter(int32_t per_tenant, int32_t total) : per_tenant_(per_tenant), total_(total) {}

  class Slot {
   public:
    Slot(InflightCounter* owner, std::string tenant) : owner_(owner), tenant_(std::move(tenant)) {}
    ~Slot() { owner_->Release(tenant_); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    InflightCounter* owner_;
    std::string tenant_;
  };

  // ResourceExhausted naming the flag when a limit is reached.
  absl::StatusOr<std::unique_ptr<Slot>> Acquire(const std::string& tenant);

 private:
  void Release(const std::string& tenant);

  const int32_t per_tenant_, total_;
  Mutex mu_;
  std::map<std::string, int32_t> by_tenant_ ABSL_GUARDED_BY(mu_);
  int32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // Every call is authenticated by tenants; adapter references are resolved
  // (with access checks) by catalog; chat requests are rendered with
  // chat_template (null: refused). All must outlive the service.
  InferenceService(Scheduler* scheduler, const Tokenizer* tokenizer, const TenantDirectory* tenants,
                   const AdapterCatalog* catalog, v1::ServerInfoResponse info, InferenceLimits limits = {},
                   const ChatTemplate* chat_template = nullptr);

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerateStream(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ServerInfo(grpc::CallbackServerContext* context,
                                       const v1::ServerInfoRequest* request,
                                       v1::ServerInfoResponse* response) override;
  // Authenticated and counted like Generate; the work runs on the service's
  // workers.
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;

  // What every Generate call needs besides its request.
  struct Env {
    Scheduler* scheduler;
    const Tokenizer* tokenizer;
    const TenantDirectory* tenants;
    const AdapterCatalog* catalog;
    RequestLimits limits;
    InflightCounter* inflight;
    const ChatTemplate* chat_template;
  };
  // For other front ends (the HTTP API) that share the limits and counts.
  const Env& env() const { return env_; }

 private:
  Env env_;
  const v1::ServerInfoResponse info_;
  InflightCounter inflight_;
  WorkQueue workers_;  // last: destroyed (and drained) first
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_INFERENCE_SERVICE_H_
