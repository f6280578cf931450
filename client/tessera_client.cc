#include "client/tessera_client.h"

#include "absl/strings/str_cat.h"

namespace tessera {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {
void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d));
}
}  // namespace

TesseraClient::TesseraClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), inference_(v1::Inference::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<TesseraClient>> TesseraClient::Connect(const std::string& address,
                                                                      absl::Duration timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot reach a Tessera server at ", address, " within ",
                                               absl::FormatDuration(timeout),
                                               " (is tessera-server running there?)"));
  }
  return std::unique_ptr<TesseraClient>(new TesseraClient(std::move(channel)));
}

absl::StatusOr<v1::GenerateResponse> TesseraClient::Generate(const v1::GenerateRequest& request,
                                                             absl::Duration deadline) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  v1::GenerateResponse response;
  grpc::Status s = inference_->Generate(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::Status TesseraClient::GenerateStream(
    const v1::GenerateRequest& request,
    const std::function<void(const v1::GenerateStreamResponse&)>& on_message, absl::Duration deadline) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
      inference_->GenerateStream(&ctx, request);
  v1::GenerateStreamResponse m;
  while (reader->Read(&m)) on_message(m);
  return FromGrpcStatus(reader->Finish());
}

absl::StatusOr<v1::ServerInfoResponse> TesseraClient::ServerInfo(absl::Duration deadline) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  v1::ServerInfoResponse response;
  grpc::Status s = inference_->ServerInfo(&ctx, v1::ServerInfoRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace tessera
