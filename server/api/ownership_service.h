// tessera.v1.Ownership on the gRPC callback API: SEAL watermark credentials
// (RegisterWatermark) and ownership proofs (VerifyOwnership). Credentials are
// only ever compared, never returned.
//
// Thread safety: all methods may be called concurrently by gRPC.
#ifndef TESSERA_SERVER_API_OWNERSHIP_SERVICE_H_
#define TESSERA_SERVER_API_OWNERSHIP_SERVICE_H_

#include "common/work_queue.h"
#include "server/api/adapter_catalog.h"
#include "server/api/tenants.h"
#include "tessera/v1/ownership.grpc.pb.h"

namespace tessera {

class OwnershipService final : public v1::Ownership::CallbackService {
 public:
  // All must outlive the service; vault may be null (no --data-dir).
  OwnershipService(const TenantDirectory* tenants, const AdapterCatalog* catalog, WatermarkVault* vault);

  grpc::ServerUnaryReactor* RegisterWatermark(grpc::CallbackServerContext* context,
                                              const v1::RegisterWatermarkRequest* request,
                                              v1::RegisterWatermarkResponse* response) override;
  grpc::ServerUnaryReactor* VerifyOwnership(grpc::CallbackServerContext* context,
                                            const v1::VerifyOwnershipRequest* request,
                                            v1::VerifyOwnershipResponse* response) override;

 private:
  absl::Status Register(const grpc::CallbackServerContext& context,
                        const v1::RegisterWatermarkRequest& request, v1::RegisterWatermarkResponse* response);
  absl::Status Verify(const grpc::CallbackServerContext& context, const v1::VerifyOwnershipRequest& request,
                      v1::VerifyOwnershipResponse* response);

  const TenantDirectory* tenants_;
  const AdapterCatalog* catalog_;
  WatermarkVault* vault_;
  // Registration and verification compute null distributions: two worker
  // threads, never gRPC's callback threads, and never one thread per call.
  WorkQueue workers_{2};
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_OWNERSHIP_SERVICE_H_
