// Authenticates a gRPC call from its `authorization` metadata.
#ifndef TESSERA_SERVER_API_CALL_AUTH_H_
#define TESSERA_SERVER_API_CALL_AUTH_H_

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "server/api/tenants.h"

namespace tessera {

inline absl::StatusOr<Tenant> AuthenticateCall(const TenantDirectory& tenants,
                                               const grpc::CallbackServerContext& context) {
  std::optional<std::string_view> header;
  const auto& md = context.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    header = std::string_view(it->second.data(), it->second.size());
  }
  return tenants.Authenticate(header);
}

}  // namespace tessera

#endif  // TESSERA_SERVER_API_CALL_AUTH_H_
