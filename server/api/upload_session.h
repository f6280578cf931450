// One adapter upload stream, independent of gRPC: the order and content
// rules of UploadAdapter (metadata first and once, adapter_config.json chunks,
// then adapter_model.safetensors chunks, then the sha256), the files written
// into the store's staging area as chunks arrive, and the final validation
// and commit. The reactor feeds it messages; so does the upload fuzzer.
//
// Thread safety: not thread-safe; one stream at a time uses it. Destroying it
// before a successful Commit removes what it wrote.
#ifndef TESSERA_SERVER_API_UPLOAD_SESSION_H_
#define TESSERA_SERVER_API_UPLOAD_SESSION_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/api/adapter_catalog.h"
#include "server/api/tenants.h"
#include "tessera/v1/adapters.pb.h"

namespace tessera {

class UploadSession {
 public:
  // catalog must outlive the session.
  UploadSession(AdapterCatalog* catalog, Tenant tenant) : catalog_(catalog), tenant_(std::move(tenant)) {}

  enum class Next { kMore, kCommit };
  // Takes the next message: kCommit once the sha256 has arrived (call Commit
  // next), kMore otherwise; an error ends the upload (its files are removed).
  absl::StatusOr<Next> Add(const v1::UploadAdapterRequest& message);
  // The stream ended before the sha256: the status to report.
  absl::Status EndedEarly() const;
  // Validates and commits; slow (reads and converts the whole adapter), so
  // the server calls it off the gRPC callback threads. Call once, after Add
  // returned kCommit.
  absl::StatusOr<v1::AdapterInfo> Commit();

  const Tenant& tenant() const { return tenant_; }
  const v1::UploadMetadata& metadata() const { return metadata_; }

 private:
  AdapterCatalog* catalog_;
  Tenant tenant_;
  v1::UploadMetadata metadata_;
  bool have_metadata_ = false;
  std::unique_ptr<AdapterUpload> upload_;
  std::string sha256_;
  bool ready_ = false;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_UPLOAD_SESSION_H_
