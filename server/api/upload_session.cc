#include "server/api/upload_session.h"

#include "common/exception_guard.h"

namespace tessera {

absl::StatusOr<UploadSession::Next> UploadSession::Add(const v1::UploadAdapterRequest& message) {
  if (ready_) return absl::InvalidArgumentError("the sha256 message must be the last message of an upload");
  switch (message.part_case()) {
    case v1::UploadAdapterRequest::kMetadata: {
      if (have_metadata_) return absl::InvalidArgumentError("metadata may only be sent once, first");
      metadata_ = message.metadata();
      have_metadata_ = true;
      absl::StatusOr<std::unique_ptr<AdapterUpload>> upload = catalog_->BeginUpload(tenant_, metadata_);
      if (!upload.ok()) return upload.status();
      upload_ = *std::move(upload);
      return Next::kMore;
    }
    case v1::UploadAdapterRequest::kChunk: {
      if (!upload_) return absl::InvalidArgumentError("the first upload message must carry the metadata");
      absl::Status s = upload_->Append(message.chunk().file(), message.chunk().data());
      if (!s.ok()) return s;
      return Next::kMore;
    }
    case v1::UploadAdapterRequest::kSha256:
      if (!upload_) return absl::InvalidArgumentError("the first upload message must carry the metadata");
      sha256_ = message.sha256();
      ready_ = true;
      return Next::kCommit;
    default:
      return absl::InvalidArgumentError("empty upload message: set metadata, chunk or sha256");
  }
}

absl::Status UploadSession::EndedEarly() const {
  return absl::InvalidArgumentError(
      upload_ ? "upload stream ended before the final sha256 message; nothing was stored, send it again"
              : "upload stream ended before its metadata message; nothing was stored");
}

absl::StatusOr<v1::AdapterInfo> UploadSession::Commit() {
  if (!ready_ || !upload_) return absl::FailedPreconditionError("the upload is not complete");
  return GuardExceptions("UploadAdapter",
                         [&] { return catalog_->FinishUpload(tenant_, metadata_, std::move(upload_), sha256_); });
}

}  // namespace tessera
