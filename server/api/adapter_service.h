// tessera.v1.Adapters on the gRPC callback API: authentication, then the
// AdapterCatalog's policy. UploadAdapter streams file chunks straight into
// the store's staging area, so an upload never sits whole in memory; a stream
// that ends early, or any error, removes what it wrote. The final validation
// and commit run on a thread of their own, not on a gRPC callback thread.
//
// Thread safety: all methods may be called concurrently by gRPC.
#ifndef TESSERA_SERVER_API_ADAPTER_SERVICE_H_
#define TESSERA_SERVER_API_ADAPTER_SERVICE_H_

#include "server/api/adapter_catalog.h"
#include "server/api/tenants.h"
#include "tessera/v1/adapters.grpc.pb.h"

namespace tessera {

class AdapterService final : public v1::Adapters::CallbackService {
 public:
  // tenants and catalog must outlive the service.
  AdapterService(const TenantDirectory* tenants, AdapterCatalog* catalog);

  grpc::ServerReadReactor<v1::UploadAdapterRequest>* UploadAdapter(grpc::CallbackServerContext* context,
                                                                   v1::AdapterInfo* response) override;
  grpc::ServerUnaryReactor* ListAdapters(grpc::CallbackServerContext* context,
                                         const v1::ListAdaptersRequest* request,
                                         v1::ListAdaptersResponse* response) override;
  grpc::ServerUnaryReactor* GetAdapter(grpc::CallbackServerContext* context,
                                       const v1::GetAdapterRequest* request,
                                       v1::AdapterInfo* response) override;
  grpc::ServerUnaryReactor* DeleteAdapter(grpc::CallbackServerContext* context,
                                          const v1::DeleteAdapterRequest* request,
                                          v1::DeleteAdapterResponse* response) override;
  grpc::ServerUnaryReactor* PrefetchAdapter(grpc::CallbackServerContext* context,
                                            const v1::PrefetchAdapterRequest* request,
                                            v1::AdapterInfo* response) override;

 private:
  const TenantDirectory* tenants_;
  AdapterCatalog* catalog_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_ADAPTER_SERVICE_H_
