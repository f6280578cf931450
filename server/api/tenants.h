// Tenants and API keys (--tenants FILE). The file is JSON:
//
//   {"tenants": [{"id": "acme", "role": "user",
//                 "api_key_sha256": "<hex sha256 of the key>",
//                 "max_adapters": 100, "max_adapter_bytes": 10737418240}]}
//
// Keys are only ever held as sha256 hashes. Clients send
// `authorization: Bearer KEY` metadata; admins see and manage every tenant's
// adapters. The quota fields are optional (defaults below).
//
// Thread safety: immutable after construction; Authenticate may be called
// from any thread.
#ifndef TESSERA_SERVER_API_TENANTS_H_
#define TESSERA_SERVER_API_TENANTS_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tessera {

enum class TenantRole { kUser, kAdmin };

struct Tenant {
  std::string id;
  TenantRole role = TenantRole::kUser;
  int64_t max_adapters = 100;
  int64_t max_adapter_bytes = int64_t{10} << 30;
  bool admin() const { return role == TenantRole::kAdmin; }
};

class TenantDirectory {
 public:
  // Parses FILE; InvalidArgument naming the file and entry on any mistake
  // (unknown role, key hash not 64 hex digits, duplicate id or key, bad id).
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> FromJson(const std::string& text,
                                                                   const std::string& origin);
  // --insecure-no-auth: every caller is the admin tenant "local".
  static std::unique_ptr<TenantDirectory> Insecure();

  // The tenant of an `authorization` metadata value ("Bearer KEY"); nullopt
  // when the header is absent. Unauthenticated with a hint when missing,
  // malformed or unknown.
  absl::StatusOr<Tenant> Authenticate(std::optional<std::string_view> authorization) const;

  bool insecure() const { return insecure_; }
  size_t size() const { return by_key_hash_.size(); }

 private:
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> Parse(const std::string& text,
                                                                const std::string& origin);
  TenantDirectory() = default;
  bool insecure_ = false;
  std::map<std::string, Tenant> by_key_hash_;  // hex sha256 -> tenant
};

// Tenant ids and adapter names: letters, digits, '.', '_' and '-', 1 to 64
// characters, not "." or "..". InvalidArgument naming `what` otherwise.
absl::Status ValidateName(std::string_view name, std::string_view what);

}  // namespace tessera

#endif  // TESSERA_SERVER_API_TENANTS_H_
