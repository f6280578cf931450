#include "server/api/adapter_service.h"

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/api/call_auth.h"
#include "server/api/request_conversion.h"

namespace tessera {
namespace {

// How long PrefetchAdapter waits when the client set no deadline.
constexpr absl::Duration kPrefetchTimeout = absl::Minutes(5);

absl::Duration TimeLeft(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return kPrefetchTimeout;
  return std::min(kPrefetchTimeout, absl::FromChrono(deadline) - absl::Now());
}

// Reads the upload stream: metadata, chunks, sha256. Finishes with the first
// error; the AdapterUpload it holds removes its files unless committed.
class UploadReactor final : public grpc::ServerReadReactor<v1::UploadAdapterRequest> {
 public:
  UploadReactor(const TenantDirectory& tenants, AdapterCatalog* catalog, grpc::CallbackServerContext* context,
                v1::AdapterInfo* response)
      : catalog_(catalog), response_(response) {
    absl::StatusOr<Tenant> tenant = AuthenticateCall(tenants, *context);
    if (!tenant.ok()) {
      Fail(tenant.status());
      return;
    }
    tenant_ = *std::move(tenant);
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (finished_) return;
    if (!ok) {
      // The client half-closed (or vanished) before sending the sha256.
      Fail(absl::InvalidArgumentError(
          upload_ ? "upload stream ended before the final sha256 message; nothing was stored, send it again"
                  : "upload stream ended before its metadata message; nothing was stored"));
      return;
    }
    absl::Status s = Handle();
    if (!s.ok()) {
      Fail(s);
      return;
    }
    if (!finished_) StartRead(&message_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Handle() {
    switch (message_.part_case()) {
      case v1::UploadAdapterRequest::kMetadata: {
        if (upload_ || have_metadata_)
          return absl::InvalidArgumentError("metadata may only be sent once, first");
        metadata_ = message_.metadata();
        have_metadata_ = true;
        absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = catalog_->BeginUpload(tenant_, metadata_);
        if (!upload.ok()) return upload.status();
        upload_ = *std::move(upload);
        return absl::OkStatus();
      }
      case v1::UploadAdapterRequest::kChunk:
        if (!upload_) return absl::InvalidArgumentError("the first upload message must carry the metadata");
        return upload_->Append(message_.chunk().file(), message_.chunk().data());
      case v1::UploadAdapterRequest::kSha256: {
        if (!upload_) return absl::InvalidArgumentError("the first upload message must carry the metadata");
        // Validation reads and converts the whole adapter: do it off the
        // gRPC callback thread. Nothing touches `this` after Finish.
        finished_ = true;
        std::thread([this, upload = std::move(upload_), sha = message_.sha256()]() mutable {
          absl::StatusOr<v1::AdapterInfo> info =
              catalog_->FinishUpload(tenant_, metadata_, std::move(upload), sha);
          if (info.ok()) *response_ = *std::move(info);
          Finish(ToGrpcStatus(info.status()));
        }).detach();
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError("empty upload message: set metadata, chunk or sha256");
    }
  }

  void Fail(const absl::Status& status) {
    upload_.reset();
    finished_ = true;
    Finish(ToGrpcStatus(status));
  }

  AdapterCatalog* catalog_;
  v1::AdapterInfo* response_;
  Tenant tenant_;
  v1::UploadAdapterRequest message_;
  v1::UploadMetadata metadata_;
  bool have_metadata_ = false;
  std::unique_ptr<AdapterUpload> upload_;
  bool finished_ = false;
};

}  // namespace

AdapterService::AdapterService(const TenantDirectory* tenants, AdapterCatalog* catalog)
    : tenants_(tenants), catalog_(catalog) {}

grpc::ServerReadReactor<v1::UploadAdapterRequest>* AdapterService::UploadAdapter(
    grpc::CallbackServerContext* context, v1::AdapterInfo* response) {
  return new UploadReactor(*tenants_, catalog_, context, response);
}

grpc::ServerUnaryReactor* AdapterService::ListAdapters(grpc::CallbackServerContext* context,
                                                       const v1::ListAdaptersRequest* request,
                                                       v1::ListAdaptersResponse* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  for (v1::AdapterInfo& info : catalog_->List(*tenant)) *response->add_adapters() = std::move(info);
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdapterService::GetAdapter(grpc::CallbackServerContext* context,
                                                     const v1::GetAdapterRequest* request,
                                                     v1::AdapterInfo* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  absl::StatusOr<v1::AdapterInfo> info = catalog_->Get(*tenant, request->reference());
  if (info.ok()) *response = *std::move(info);
  return FinishUnary(context, info.status());
}

grpc::ServerUnaryReactor* AdapterService::DeleteAdapter(grpc::CallbackServerContext* context,
                                                        const v1::DeleteAdapterRequest* request,
                                                        v1::DeleteAdapterResponse* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  return FinishUnary(context, catalog_->Delete(*tenant, request->reference()));
}

grpc::ServerUnaryReactor* AdapterService::PrefetchAdapter(grpc::CallbackServerContext* context,
                                                          const v1::PrefetchAdapterRequest* request,
                                                          v1::AdapterInfo* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  // Waits on this callback thread for the load, stopping on cancellation or
  // the deadline; prefetch is an explicit, rare call.
  absl::StatusOr<v1::AdapterInfo> info = catalog_->Prefetch(*tenant, request->reference(), TimeLeft(*context),
                                                            [context] { return context->IsCancelled(); });
  if (info.ok()) *response = *std::move(info);
  return FinishUnary(context, info.status());
}

}  // namespace tessera
