#include "client/tessera_client.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace tessera {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kModelFile[] = "adapter_model.safetensors";
constexpr size_t kChunkBytes = size_t{1} << 20;

using FilePtr = std::unique_ptr<FILE, int (*)(FILE*)>;

// Bearer tokens travel as an HTTP/2 header value: printable ASCII, no spaces.
bool IsValidApiKey(const std::string& key) {
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

TesseraClient::TesseraClient(std::shared_ptr<grpc::Channel> channel, std::string api_key)
    : channel_(std::move(channel)),
      api_key_(std::move(api_key)),
      inference_(v1::Inference::NewStub(channel_)),
      adapters_(v1::Adapters::NewStub(channel_)),
      ownership_(v1::Ownership::NewStub(channel_)) {}

namespace {
absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the ", what, " file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

absl::StatusOr<std::unique_ptr<TesseraClient>> TesseraClient::Connect(const std::string& address,
                                                                      absl::Duration timeout, std::string api_key,
                                                                      const TlsOptions& tls) {
  if (!IsValidApiKey(api_key)) {
    return absl::InvalidArgumentError(
        "the API key may only contain printable ASCII characters without spaces (check for a trailing "
        "newline)");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls.enabled) {
    grpc::SslCredentialsOptions ssl;
    if (!tls.ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadPem(tls.ca_file, "CA certificate");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!tls.cert_file.empty() || !tls.key_file.empty()) {
      absl::StatusOr<std::string> cert = ReadPem(tls.cert_file, "client certificate");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadPem(tls.key_file, "client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateCustomChannel(address, credentials, args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout))) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach a Tessera server at ", address, " within ", absl::FormatDuration(timeout),
        tls.enabled ? " (is tessera-server running there with --tls-cert, and does --ca hold its issuer?)"
                    : " (is tessera-server running there? a server with --tls-cert needs --tls)"));
  }
  return std::unique_ptr<TesseraClient>(new TesseraClient(std::move(channel), std::move(api_key)));
}

std::unique_ptr<grpc::ClientContext> TesseraClient::NewContext(absl::Duration deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // Beyond ~10 years (or infinite): no deadline, rather than an overflowing time point.
  if (deadline < absl::Hours(24 * 365 * 10)) {
    ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(deadline));
  }
  if (!api_key_.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", api_key_));
  return ctx;
}

// --- Inference ---

absl::StatusOr<v1::GenerateResponse> TesseraClient::Generate(const v1::GenerateRequest& request,
                                                             absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::GenerateResponse response;
  grpc::Status s = inference_->Generate(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::Status TesseraClient::GenerateStream(
    const v1::GenerateRequest& request,
    const std::function<void(const v1::GenerateStreamResponse&)>& on_message, absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
      inference_->GenerateStream(ctx.get(), request);
  v1::GenerateStreamResponse m;
  while (reader->Read(&m)) on_message(m);
  return FromGrpcStatus(reader->Finish());
}

absl::StatusOr<v1::ServerInfoResponse> TesseraClient::ServerInfo(absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::ServerInfoResponse response;
  grpc::Status s = inference_->ServerInfo(ctx.get(), v1::ServerInfoRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<std::vector<int32_t>> TesseraClient::Tokenize(const std::string& text, bool add_special_tokens,
                                                             absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::TokenizeRequest request;
  request.set_text(text);
  request.set_add_special_tokens(add_special_tokens);
  v1::TokenizeResponse response;
  grpc::Status s = inference_->Tokenize(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return std::vector<int32_t>(response.ids().begin(), response.ids().end());
}

absl::StatusOr<std::string> TesseraClient::Detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens,
                                                      absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::DetokenizeRequest request;
  request.mutable_ids()->Add(ids.begin(), ids.end());
  request.set_skip_special_tokens(skip_special_tokens);
  v1::DetokenizeResponse response;
  grpc::Status s = inference_->Detokenize(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response.text();
}

// --- Adapters ---

absl::StatusOr<v1::AdapterInfo> TesseraClient::UploadAdapter(
    const std::string& dir, const v1::UploadMetadata& metadata,
    const std::function<void(int64_t sent, int64_t total)>& on_progress, absl::Duration deadline) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("adapter directory ", dir, " does not exist or is not a directory"));
  }
  struct File {
    const char* name;
    fs::path path;
    FilePtr fp{nullptr, &std::fclose};
  };
  std::array<File, 2> files = {File{kConfigFile, fs::path(dir) / kConfigFile},
                               File{kModelFile, fs::path(dir) / kModelFile}};
  int64_t total = 0;
  for (File& f : files) {
    const fs::file_status st = fs::status(f.path, ec);
    if (!fs::exists(st)) {
      return absl::NotFoundError(absl::StrCat("missing adapter file ", f.path.string(),
                                              " (an adapter directory holds ", kConfigFile, " and ",
                                              kModelFile, ")"));
    }
    if (!fs::is_regular_file(st)) {
      return absl::InvalidArgumentError(absl::StrCat(f.path.string(), " is not a regular file"));
    }
    f.fp.reset(std::fopen(f.path.c_str(), "rb"));
    if (f.fp == nullptr) {
      const int err = errno;
      return absl::ErrnoToStatus(err, absl::StrCat("cannot open ", f.path.string()));
    }
    const uintmax_t size = fs::file_size(f.path, ec);
    if (!ec) total += static_cast<int64_t>(size);
  }

  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::AdapterInfo response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadAdapterRequest>> writer =
      adapters_->UploadAdapter(ctx.get(), &response);
  v1::UploadAdapterRequest msg;
  *msg.mutable_metadata() = metadata;
  // Write returns false once the server has ended the call; Finish then says why.
  bool open = writer->Write(msg);
  if (on_progress) on_progress(0, total);
  Sha256 sha;
  int64_t sent = 0;
  std::string buffer(kChunkBytes, '\0');
  for (File& f : files) {
    // Every file is sent as at least one chunk, so that an empty file is present (and rejected by the server
    // as such) rather than missing.
    for (bool first = true; open; first = false) {
      const size_t n = std::fread(buffer.data(), 1, buffer.size(), f.fp.get());
      if (n < buffer.size() && std::ferror(f.fp.get())) {
        const int err = errno;
        ctx->TryCancel();
        (void)writer->Finish();
        return absl::DataLossError(absl::StrCat("reading ", f.path.string(), " failed after ", sent,
                                                " bytes were sent: ", std::strerror(err),
                                                "; upload cancelled"));
      }
      if (n == 0 && !first) break;
      const std::string_view data(buffer.data(), n);
      sha.Update(data);
      v1::FileChunk* chunk = msg.mutable_chunk();
      chunk->set_file(f.name);
      chunk->set_data(data.data(), data.size());
      open = writer->Write(msg);
      sent += static_cast<int64_t>(n);
      if (on_progress) on_progress(sent, std::max(total, sent));
      if (n < buffer.size()) break;  // end of file
    }
  }
  if (open) {
    msg.set_sha256(sha.HexDigest());
    open = writer->Write(msg);
  }
  if (open) writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  if (!open) return absl::InternalError("the server ended the upload early but reported success");
  return response;
}

absl::StatusOr<v1::AdapterInfo> TesseraClient::UploadAdapterRaw(
    const std::vector<v1::UploadAdapterRequest>& messages, bool half_close, absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::AdapterInfo response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadAdapterRequest>> writer =
      adapters_->UploadAdapter(ctx.get(), &response);
  bool open = true;
  for (const v1::UploadAdapterRequest& m : messages) {
    if (!(open = writer->Write(m))) break;
  }
  if (open) {
    if (half_close) {
      writer->WritesDone();
    } else {
      ctx->TryCancel();
    }
  }
  grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::ListAdaptersResponse> TesseraClient::ListAdapters(absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::ListAdaptersResponse response;
  grpc::Status s = adapters_->ListAdapters(ctx.get(), v1::ListAdaptersRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::AdapterInfo> TesseraClient::GetAdapter(const std::string& reference,
                                                          absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::GetAdapterRequest request;
  request.set_reference(reference);
  v1::AdapterInfo response;
  grpc::Status s = adapters_->GetAdapter(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::Status TesseraClient::DeleteAdapter(const std::string& reference, absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::DeleteAdapterRequest request;
  request.set_reference(reference);
  v1::DeleteAdapterResponse response;
  return FromGrpcStatus(adapters_->DeleteAdapter(ctx.get(), request, &response));
}

absl::StatusOr<v1::AdapterInfo> TesseraClient::PrefetchAdapter(const std::string& reference,
                                                               absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::PrefetchAdapterRequest request;
  request.set_reference(reference);
  v1::AdapterInfo response;
  grpc::Status s = adapters_->PrefetchAdapter(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::WatermarkCredentialFiles> TesseraClient::ReadCredentialFiles(
    const std::string& passport_file, const std::string& raw_factors_file) {
  v1::WatermarkCredentialFiles files;
  for (const auto& [path, out] :
       {std::pair<std::string, std::string*>{passport_file, files.mutable_passport_safetensors()},
        {raw_factors_file, files.mutable_raw_factors_safetensors()}}) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
  }
  return files;
}

absl::StatusOr<v1::RegisterWatermarkResponse> TesseraClient::RegisterWatermark(
    const std::string& credential_id, const v1::WatermarkCredentialFiles& files, absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::RegisterWatermarkRequest request;
  request.set_credential_id(credential_id);
  *request.mutable_files() = files;
  v1::RegisterWatermarkResponse response;
  grpc::Status s = ownership_->RegisterWatermark(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::VerifyOwnershipResponse> TesseraClient::VerifyOwnership(
    const v1::VerifyOwnershipRequest& request, absl::Duration deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = NewContext(deadline);
  v1::VerifyOwnershipResponse response;
  grpc::Status s = ownership_->VerifyOwnership(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace tessera
