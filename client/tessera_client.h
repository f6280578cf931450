// C++ client for a Tessera server: the Inference service (generation, server
// info) and the Adapters service (upload, list, inspect, delete and prefetch
// adapters). Later API services (tenants, ownership) add methods here.
//
// Thread safety: a TesseraClient may be used from several threads at once;
// every call uses its own grpc::ClientContext. Callbacks (on_message,
// on_progress) run on the calling thread, before the call returns.
//
// Errors: every call returns the server's gRPC status as an absl::Status with
// the same code and message (FromGrpcStatus); DEADLINE_EXCEEDED when the
// per-call deadline passes; UNAUTHENTICATED / PERMISSION_DENIED as the server
// decides for the API key given to Connect. Local failures (a missing file to
// upload) use their own codes, documented per method.
#ifndef TESSERA_CLIENT_TESSERA_CLIENT_H_
#define TESSERA_CLIENT_TESSERA_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tessera/v1/adapters.grpc.pb.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tessera/v1/ownership.grpc.pb.h"

namespace tessera {

// Transport security of a client channel. PEM file paths; empty fields take
// gRPC's defaults (the system roots; no client certificate).
struct TlsOptions {
  bool enabled = false;
  std::string ca_file;    // roots to verify the server with
  std::string cert_file;  // client certificate, for servers that require mTLS
  std::string key_file;   // its private key
};

class TesseraClient {
 public:
  // Creates a channel to address ("host:port"); waits up to connect_timeout
  // for it to become ready (Unavailable otherwise). When api_key is not empty,
  // every call sends it as `authorization: Bearer API_KEY` metadata.
  // NotFound naming a TLS file that cannot be read.
  static absl::StatusOr<std::unique_ptr<TesseraClient>> Connect(
      const std::string& address, absl::Duration connect_timeout = absl::Seconds(10), std::string api_key = "",
      const TlsOptions& tls = TlsOptions());

  // --- Inference ---

  absl::StatusOr<v1::GenerateResponse> Generate(const v1::GenerateRequest& request,
                                                absl::Duration deadline = absl::Minutes(10));
  // Calls on_message for each streamed message, in order; returns the
  // stream's final status.
  absl::Status GenerateStream(const v1::GenerateRequest& request,
                              const std::function<void(const v1::GenerateStreamResponse&)>& on_message,
                              absl::Duration deadline = absl::Minutes(10));
  absl::StatusOr<v1::ServerInfoResponse> ServerInfo(absl::Duration deadline = absl::Seconds(30));
  // The server model's tokenizer.
  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& text, bool add_special_tokens,
                                                absl::Duration deadline = absl::Seconds(30));
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens,
                                         absl::Duration deadline = absl::Seconds(30));

  // --- Adapters ---

  // Uploads the adapter in directory `dir` (DIR/adapter_config.json and
  // DIR/adapter_model.safetensors) under `metadata`: the metadata message,
  // then both files in 1 MiB chunks (config first), then the hex sha256 of
  // the bytes of both files in that order, computed while reading. Returns the
  // stored adapter as the server describes it.
  // on_progress, when set, is called with (bytes of both files sent so far,
  // their total size): once with sent = 0 before the first chunk and after
  // every chunk.
  // Errors: NOT_FOUND naming the path of a missing file (nothing is sent);
  // DATA_LOSS when a file cannot be read completely (the stream is cancelled,
  // so the server stores nothing); otherwise the server's status
  // (INVALID_ARGUMENT for a bad name or adapter, ALREADY_EXISTS, ...).
  absl::StatusOr<v1::AdapterInfo> UploadAdapter(
      const std::string& dir, const v1::UploadMetadata& metadata,
      const std::function<void(int64_t sent, int64_t total)>& on_progress = nullptr,
      absl::Duration deadline = absl::Minutes(30));

  // Low-level upload for tests of malformed streams: writes `messages` as
  // they are (any order, any content). When half_close is true, then
  // half-closes the stream (WritesDone) and returns the server's reply or
  // status. When it is false, the stream is cut instead: the call is cancelled
  // (TryCancel) right after the writes, as when a client dies mid-upload, and
  // the resulting status (normally CANCELLED) is returned; messages written
  // just before the cut may or may not have reached the server. Writing stops
  // early if the server has already ended the call; its status is returned.
  absl::StatusOr<v1::AdapterInfo> UploadAdapterRaw(const std::vector<v1::UploadAdapterRequest>& messages,
                                                   bool half_close = true,
                                                   absl::Duration deadline = absl::Minutes(30));

  // The caller's own adapters (every tenant's for an admin), sorted by
  // reference.
  absl::StatusOr<v1::ListAdaptersResponse> ListAdapters(absl::Duration deadline = absl::Seconds(30));
  // reference: "NAME" or "OWNER/NAME". NOT_FOUND for an adapter that does not
  // exist or is another tenant's private one.
  absl::StatusOr<v1::AdapterInfo> GetAdapter(const std::string& reference,
                                             absl::Duration deadline = absl::Seconds(30));
  // Removes the adapter from the store and the cache (requests already running
  // keep the version they started with).
  absl::Status DeleteAdapter(const std::string& reference, absl::Duration deadline = absl::Seconds(30));
  // Loads the adapter into the server's resident cache now; returns its state
  // afterwards.
  absl::StatusOr<v1::AdapterInfo> PrefetchAdapter(const std::string& reference,
                                                  absl::Duration deadline = absl::Minutes(5));

  // --- Ownership (SEAL) ---

  // Reads passport_file (tensor "C") and raw_factors_file (the raw LoRA
  // factors, peft key names), as in a fixture's owner_secret/, into files.
  // NotFound naming a missing file.
  static absl::StatusOr<v1::WatermarkCredentialFiles> ReadCredentialFiles(
      const std::string& passport_file, const std::string& raw_factors_file);
  absl::StatusOr<v1::RegisterWatermarkResponse> RegisterWatermark(const std::string& credential_id,
                                                                  const v1::WatermarkCredentialFiles& files,
                                                                  absl::Duration deadline = absl::Minutes(5));
  absl::StatusOr<v1::VerifyOwnershipResponse> VerifyOwnership(const v1::VerifyOwnershipRequest& request,
                                                              absl::Duration deadline = absl::Minutes(5));

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  TesseraClient(std::shared_ptr<grpc::Channel> channel, std::string api_key);

  // A context for one call: deadline `deadline` from now, plus the
  // authorization metadata when an API key is set.
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration deadline) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::string api_key_;
  std::unique_ptr<v1::Inference::Stub> inference_;
  std::unique_ptr<v1::Adapters::Stub> adapters_;
  std::unique_ptr<v1::Ownership::Stub> ownership_;
};

absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tessera

#endif  // TESSERA_CLIENT_TESSERA_CLIENT_H_
