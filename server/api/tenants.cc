#include "server/api/tenants.h"

#include <openssl/crypto.h>

#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/exception_guard.h"
#include "common/json_util.h"
#include "common/sha256.h"
#include "nlohmann/json.hpp"

namespace tessera {

absl::Status ValidateName(std::string_view name, std::string_view what) {
  bool ok = !name.empty() && name.size() <= 64 && name != "." && name != "..";
  for (char ch : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-')
      ok = false;
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(what), " '", Excerpt(name),
                   "' is not valid: use 1 to 64 letters, digits, '.', '_' or '-' (no "
                   "'/', not '.' or '..')"));
}

absl::StatusOr<std::unique_ptr<TenantDirectory>> TenantDirectory::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read tenants file ", path,
                     "; pass --tenants FILE (see README) or --insecure-no-auth for a local "
                     "demo"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return FromJson(ss.str(), path);
}

absl::StatusOr<std::unique_ptr<TenantDirectory>> TenantDirectory::FromJson(const std::string& text,
                                                                           const std::string& origin) {
  return GuardExceptions(origin, [&] { return Parse(text, origin); });
}

absl::StatusOr<std::unique_ptr<TenantDirectory>> TenantDirectory::Parse(const std::string& text,
                                                                        const std::string& origin) {
  using nlohmann::json;
  absl::StatusOr<json> parsed = ParseJson(text, origin, 64 << 20);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  if (!j.is_object() || !j.contains("tenants") || !j["tenants"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin,
                     ": expected {\"tenants\": [{\"id\": ..., \"role\": \"user\"|\"admin\", "
                     "\"api_key_sha256\": ...}]}"));
  }
  auto dir = std::unique_ptr<TenantDirectory>(new TenantDirectory());
  std::set<std::string> ids;
  int index = 0;
  for (const json& t : j["tenants"]) {
    const std::string where = absl::StrCat(origin, ": tenants[", index++, "]");
    if (!t.is_object() || !t.contains("id") || !t["id"].is_string() || !t.contains("api_key_sha256") ||
        !t["api_key_sha256"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs string fields \"id\" and \"api_key_sha256\""));
    }
    Tenant tenant;
    tenant.id = t["id"].get<std::string>();
    if (absl::Status s = ValidateName(tenant.id, "tenant id"); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
    }
    if (!ids.insert(tenant.id).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tenant id '", tenant.id, "' appears twice"));
    }
    const std::string role = t.value("role", "user");
    if (role == "admin") {
      tenant.role = TenantRole::kAdmin;
    } else if (role != "user") {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": role must be \"user\" or \"admin\", got \"", role, "\""));
    }
    // Checked conversions: nlohmann's get<int64_t>() of a float out of range
    // is undefined behaviour (the tenants fuzzer found 3.6e122).
    absl::StatusOr<int64_t> max_adapters =
        JsonIntField(t, "max_adapters", tenant.max_adapters, 0, std::numeric_limits<int32_t>::max());
    absl::StatusOr<int64_t> max_bytes = JsonIntField(t, "max_adapter_bytes", tenant.max_adapter_bytes, 0,
                                                     std::numeric_limits<int64_t>::max());
    if (!max_adapters.ok() || !max_bytes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": quotas must be non-negative integers: ",
          (max_adapters.ok() ? max_bytes.status() : max_adapters.status()).message()));
    }
    tenant.max_adapters = *max_adapters;
    tenant.max_adapter_bytes = *max_bytes;
    std::string hash = absl::AsciiStrToLower(t["api_key_sha256"].get<std::string>());
    bool hex = hash.size() == 64;
    for (char ch : hash) hex = hex && absl::ascii_isxdigit(static_cast<unsigned char>(ch));
    if (!hex) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ": api_key_sha256 must be 64 hex digits (e.g. printf %s KEY | sha256sum), not the key itself"));
    }
    if (!dir->by_key_hash_.emplace(hash, tenant).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the same API key is given to two tenants"));
    }
  }
  return dir;
}

std::unique_ptr<TenantDirectory> TenantDirectory::Insecure() {
  auto dir = std::unique_ptr<TenantDirectory>(new TenantDirectory());
  dir->insecure_ = true;
  return dir;
}

absl::StatusOr<Tenant> TenantDirectory::Authenticate(std::optional<std::string_view> authorization) const {
  if (insecure_) {
    Tenant local;
    local.id = "local";
    local.role = TenantRole::kAdmin;
    local.max_adapters = std::numeric_limits<int64_t>::max();
    local.max_adapter_bytes = std::numeric_limits<int64_t>::max();
    return local;
  }
  if (!authorization) {
    return absl::UnauthenticatedError(
        "missing API key: send metadata 'authorization: Bearer KEY' (tessera CLI: --api-key or "
        "TESSERA_API_KEY)");
  }
  std::string_view value = *authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(std::string(value.substr(0, kBearer.size())), std::string(kBearer))) {
    return absl::UnauthenticatedError("malformed authorization metadata: expected 'Bearer KEY'");
  }
  // Every stored hash is compared, in constant time, so the time taken says
  // nothing about which (or whether a) tenant's key hash shares a prefix.
  const std::string hash = Sha256Hex(value.substr(kBearer.size()));
  const Tenant* found = nullptr;
  for (const auto& [key_hash, tenant] : by_key_hash_) {
    if (key_hash.size() == hash.size() && CRYPTO_memcmp(key_hash.data(), hash.data(), hash.size()) == 0) {
      found = &tenant;
    }
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown API key");
  return *found;
}

}  // namespace tessera
