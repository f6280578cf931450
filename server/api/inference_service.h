// tessera.v1.Inference on the gRPC callback API. Reactors only translate and
// post work to the Scheduler; tokens come back through its callbacks. Each
// reactor owns a RequestHandle, so a client cancellation (OnCancel) or a
// failed stream write cancels the request and frees its KV blocks; Finish is
// called exactly once, from the request's on_finish.
//
// Thread safety: all methods may be called concurrently by gRPC.
#ifndef TESSERA_SERVER_API_INFERENCE_SERVICE_H_
#define TESSERA_SERVER_API_INFERENCE_SERVICE_H_

#include "server/api/adapter_catalog.h"
#include "server/api/tenants.h"
#include "server/model/tokenizer.h"
#include "server/scheduler/scheduler.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // Every call is authenticated by tenants; adapter references are resolved
  // (with access checks) by catalog. All must outlive the service.
  InferenceService(Scheduler* scheduler, const Tokenizer* tokenizer, const TenantDirectory* tenants,
                   const AdapterCatalog* catalog, v1::ServerInfoResponse info);

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerateStream(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ServerInfo(grpc::CallbackServerContext* context,
                                       const v1::ServerInfoRequest* request,
                                       v1::ServerInfoResponse* response) override;

 private:
  Scheduler* scheduler_;
  const Tokenizer* tokenizer_;
  const TenantDirectory* tenants_;
  const AdapterCatalog* catalog_;
  const v1::ServerInfoResponse info_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_INFERENCE_SERVICE_H_
