// Who may do what with which adapter: the policy layer between the gRPC
// services and the adapter store and cache.
//
// A reference is "NAME" (the caller's own adapter, else a start-up adapter of
// that name) or "OWNER/NAME". Rules:
//   - the owner and admins may use, get, prefetch and delete an adapter, and
//     see it in ListAdapters;
//   - another tenant may only *use* a shared adapter; get, prefetch and
//     delete answer PermissionDenied and ListAdapters omits it;
//   - another tenant's private adapter is NotFound for every call, with the
//     same message as one that does not exist, so its existence never leaks.
//
// Thread safety: all methods may be called from any thread.
#ifndef TESSERA_SERVER_API_ADAPTER_CATALOG_H_
#define TESSERA_SERVER_API_ADAPTER_CATALOG_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/api/tenants.h"
#include "server/serving/serving_stack.h"
#include "tessera/v1/adapters.pb.h"

namespace tessera {

struct ResolvedAdapter {
  std::string key;   // AdapterCache key
  std::string name;  // OWNER/NAME of a stored adapter, a start-up adapter's name
};

// Adapter descriptions are short texts; they are stored in the manifest.
inline constexpr size_t kMaxDescriptionBytes = 1024;

// What an upload that carries another tenant's registered watermark gets.
enum class WatermarkMatchAction { kReject, kFlag };

class AdapterCatalog {
 public:
  // stack must outlive the catalog. max_upload_bytes caps both files together.
  AdapterCatalog(ServingStack* stack, int64_t max_upload_bytes,
                 WatermarkMatchAction on_watermark_match = WatermarkMatchAction::kReject);

  // Called (with "reject" or "flag") for every upload that matches another
  // tenant's watermark; set before serving.
  void SetWatermarkMatchHook(std::function<void(const std::string& action)> hook) {
    on_match_ = std::move(hook);
  }

  // The adapter itself, for an ownership check: the caller's own, shared
  // ones, start-up ones, or any for an admin; NotFound as in ResolveForUse.
  absl::StatusOr<std::shared_ptr<const Adapter>> LoadForVerification(const Tenant& tenant,
                                                                     const std::string& reference) const;

  // For Generate: the cache key of a usable adapter.
  absl::StatusOr<ResolvedAdapter> ResolveForUse(const Tenant& tenant, const std::string& reference) const;

  std::vector<v1::AdapterInfo> List(const Tenant& tenant) const;
  // The start-up adapters' names (--adapter NAME=DIR): every tenant may use them.
  std::vector<std::string> StartupAdapterNames() const;
  absl::StatusOr<v1::AdapterInfo> Get(const Tenant& tenant, const std::string& reference) const;
  absl::Status Delete(const Tenant& tenant, const std::string& reference);
  // Loads into the resident cache, waiting up to timeout.
  absl::StatusOr<v1::AdapterInfo> Prefetch(const Tenant& tenant, const std::string& reference,
                                           absl::Duration timeout,
                                           const std::function<bool()>& cancelled = nullptr);

  // Upload, step 1: checks the metadata and the tenant's adapter count.
  absl::StatusOr<std::unique_ptr<AdapterUpload>> BeginUpload(const Tenant& tenant,
                                                             const v1::UploadMetadata& metadata);
  // Step 2, after every chunk was appended: checks the sha256, validates the
  // adapter against the base model and the byte quota, then commits it.
  absl::StatusOr<v1::AdapterInfo> FinishUpload(const Tenant& tenant, const v1::UploadMetadata& metadata,
                                               std::unique_ptr<AdapterUpload> upload,
                                               const std::string& sha256_hex);

  // The rule for conflicting claims: the earlier hosted upload wins. OK when
  // `credentials` of `registrant` own no adapter another tenant already
  // hosts; otherwise PermissionDenied (naming no tenant), audit-logged.
  absl::Status CheckCredentialClaims(const Tenant& registrant, const std::string& credential_id,
                                     const WatermarkCredentials& credentials) const;

  int64_t max_upload_bytes() const { return max_upload_bytes_; }

 private:
  // The store entry a reference names, with the access rules applied for an
  // operation other than use (`verb` appears in PermissionDenied messages).
  absl::StatusOr<StoredAdapter> FindForManage(const Tenant& tenant, const std::string& reference,
                                              const char* verb) const;
  v1::AdapterInfo Describe(const StoredAdapter& entry) const;
  absl::Status RequireStore() const;
  absl::Status UnknownForUse(const std::string& reference) const;

  ServingStack* stack_;
  const int64_t max_upload_bytes_;
  const WatermarkMatchAction on_watermark_match_;
  std::function<void(const std::string&)> on_match_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_ADAPTER_CATALOG_H_
