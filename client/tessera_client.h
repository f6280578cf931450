// C++ client for a Tessera server. Later API services (adapters, tenants,
// ownership) add methods here.
//
// Thread safety: a TesseraClient may be used from several threads at once.
#ifndef TESSERA_CLIENT_TESSERA_CLIENT_H_
#define TESSERA_CLIENT_TESSERA_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera {

class TesseraClient {
 public:
  // Creates a channel to address ("host:port"); waits up to connect_timeout
  // for it to become ready (Unavailable otherwise).
  static absl::StatusOr<std::unique_ptr<TesseraClient>> Connect(
      const std::string& address, absl::Duration connect_timeout = absl::Seconds(10));

  absl::StatusOr<v1::GenerateResponse> Generate(const v1::GenerateRequest& request,
                                                absl::Duration deadline = absl::Minutes(10));
  // Calls on_message for each streamed message, in order; returns the
  // stream's final status.
  absl::Status GenerateStream(const v1::GenerateRequest& request,
                              const std::function<void(const v1::GenerateStreamResponse&)>& on_message,
                              absl::Duration deadline = absl::Minutes(10));
  absl::StatusOr<v1::ServerInfoResponse> ServerInfo(absl::Duration deadline = absl::Seconds(30));

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  explicit TesseraClient(std::shared_ptr<grpc::Channel> channel);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> inference_;
};

absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tessera

#endif  // TESSERA_CLIENT_TESSERA_CLIENT_H_
