// tessera.v1.Adapters on the gRPC callback API: authentication, then the
// AdapterCatalog's policy. UploadAdapter streams file chunks straight into
// the store's staging area, so an upload never sits whole in memory; a stream
// that ends early, or any error, removes what it wrote. The final validation
// and commit run on a thread of their own, not on a gRPC callback thread.
//
// Uploads hold files open, so they are bounded (UploadLimits): at most
// max_per_tenant per tenant and max_total in all are in flight, beyond which
// an upload gets RESOURCE_EXHAUSTED; an upload that sends nothing for
// idle_timeout is cancelled and its files removed.
//
// Thread safety: all methods may be called concurrently by gRPC.
#ifndef TESSERA_SERVER_API_ADAPTER_SERVICE_H_
#define TESSERA_SERVER_API_ADAPTER_SERVICE_H_

#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "server/api/adapter_catalog.h"
#include "server/api/tenants.h"
#include "tessera/v1/adapters.grpc.pb.h"

namespace tessera {

struct UploadLimits {
  int32_t max_per_tenant = 4;                     // --max-uploads-per-tenant
  int32_t max_total = 64;                         // --max-uploads-total
  absl::Duration idle_timeout = absl::Seconds(30);  // --upload-idle-timeout
};

// The uploads in flight: admission against UploadLimits and the idle reaper.
class UploadTracker {
 public:
  explicit UploadTracker(UploadLimits limits);
  ~UploadTracker();

  // Admits an upload of `tenant` on `context`; ResourceExhausted naming the
  // flag when a limit is reached. The key identifies it in Touch and Remove.
  absl::Status Add(const void* key, const std::string& tenant, grpc::CallbackServerContext* context);
  // Records activity; `busy` uploads (validating) are never reaped. False
  // when the reaper has already cancelled this upload.
  bool Touch(const void* key, bool busy = false);
  // True once the reaper cancelled this upload for being idle.
  bool TimedOut(const void* key);
  void Remove(const void* key);

  const UploadLimits& limits() const { return limits_; }

 private:
  struct Entry {
    std::string tenant;
    grpc::CallbackServerContext* context;
    absl::Time last_activity;
    bool busy = false;
    bool timed_out = false;
  };
  void Reap();

  const UploadLimits limits_;
  // Held by the reaper while it cancels and by Remove: a context is never
  // cancelled after its reactor is gone. Acquired before mu_.
  Mutex cancel_mu_;
  Mutex mu_ ABSL_ACQUIRED_AFTER(cancel_mu_);
  std::map<const void*, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int32_t> by_tenant_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CondVar stop_cv_;
  std::thread reaper_;
};

class AdapterService final : public v1::Adapters::CallbackService {
 public:
  // tenants and catalog must outlive the service.
  AdapterService(const TenantDirectory* tenants, AdapterCatalog* catalog, UploadLimits limits = {});

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
  UploadTracker uploads_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_ADAPTER_SERVICE_H_
