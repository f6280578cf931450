#include "server/api/adapter_catalog.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

struct Reference {
  std::string owner;  // empty: the caller's
  std::string name;
};

absl::StatusOr<Reference> ParseReference(const std::string& reference) {
  Reference r;
  const size_t slash = reference.find('/');
  if (slash == std::string::npos) {
    r.name = reference;
  } else {
    r.owner = reference.substr(0, slash);
    r.name = reference.substr(slash + 1);
    TESSERA_RETURN_IF_ERROR(ValidateName(r.owner, "adapter owner"));
  }
  TESSERA_RETURN_IF_ERROR(ValidateName(r.name, "adapter name"));
  return r;
}

absl::Status NotFound(const std::string& reference) {
  return absl::NotFoundError(absl::StrCat(
      "adapter '", reference, "' not found; `tessera adapters list` shows the adapters you manage"));
}

v1::AdapterState ToProto(AdapterCache::State s) {
  switch (s) {
    case AdapterCache::State::kResident:
      return v1::ADAPTER_STATE_RESIDENT;
    case AdapterCache::State::kPinned:
      return v1::ADAPTER_STATE_PINNED;
    default:
      return v1::ADAPTER_STATE_STORED;
  }
}

}  // namespace

AdapterCatalog::AdapterCatalog(ServingStack* stack, int64_t max_upload_bytes,
                               WatermarkMatchAction on_watermark_match)
    : stack_(stack), max_upload_bytes_(max_upload_bytes), on_watermark_match_(on_watermark_match) {}

absl::StatusOr<std::shared_ptr<const Adapter>> AdapterCatalog::LoadForVerification(
    const Tenant& tenant, const std::string& reference) const {
  TESSERA_ASSIGN_OR_RETURN(ResolvedAdapter resolved, ResolveForUse(tenant, reference));
  return stack_->LoadAdapterByKey(resolved.key);
}

absl::Status AdapterCatalog::RequireStore() const {
  if (stack_->store) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "this server has no adapter store; start tessera-server with --data-dir DIR to upload adapters");
}

absl::StatusOr<ResolvedAdapter> AdapterCatalog::ResolveForUse(const Tenant& tenant,
                                                              const std::string& reference) const {
  TESSERA_ASSIGN_OR_RETURN(Reference ref, ParseReference(reference));
  const std::string owner = ref.owner.empty() ? tenant.id : ref.owner;
  if (stack_->store) {
    if (std::optional<StoredAdapter> e = stack_->store->Find(owner, ref.name)) {
      if (owner == tenant.id || e->shared || tenant.admin()) {
        return ResolvedAdapter{StoredAdapterKey(e->id), absl::StrCat(owner, "/", ref.name)};
      }
      return UnknownForUse(reference);
    }
  }
  if (ref.owner.empty()) {
    // A start-up adapter (--adapter NAME=DIR), served to every tenant.
    const absl::Status s = stack_->startup_adapters->Resolve(ref.name);
    if (s.ok()) return ResolvedAdapter{ref.name, ref.name};
    if (s.code() == absl::StatusCode::kFailedPrecondition) return s;
  }
  return UnknownForUse(reference);
}

absl::Status AdapterCatalog::UnknownForUse(const std::string& reference) const {
  // Same message whether the adapter is missing or another tenant's private
  // one, so that its existence does not leak.
  const std::vector<std::string> names = stack_->startup_adapters->Names();
  return absl::NotFoundError(absl::StrCat(
      "adapter '", reference,
      "' is not loaded on this server (loaded: ", names.empty() ? "none" : absl::StrJoin(names, ", "),
      "; `tessera adapters list` shows uploaded adapters); omit the adapter to use the base model"));
}

absl::StatusOr<StoredAdapter> AdapterCatalog::FindForManage(const Tenant& tenant,
                                                            const std::string& reference,
                                                            const char* verb) const {
  TESSERA_RETURN_IF_ERROR(RequireStore());
  TESSERA_ASSIGN_OR_RETURN(Reference ref, ParseReference(reference));
  const std::string owner = ref.owner.empty() ? tenant.id : ref.owner;
  std::optional<StoredAdapter> e = stack_->store->Find(owner, ref.name);
  if (!e) return NotFound(reference);
  if (owner == tenant.id || tenant.admin()) return *e;
  if (!e->shared) return NotFound(reference);
  return absl::PermissionDeniedError(absl::StrCat("adapter '", e->reference(), "' is shared by tenant '",
                                                  owner, "' for use only; only its owner may ", verb, " it"));
}

v1::AdapterInfo AdapterCatalog::Describe(const StoredAdapter& e) const {
  v1::AdapterInfo info;
  info.set_name(e.name);
  info.set_owner(e.owner);
  info.set_reference(e.reference());
  info.set_kind(e.kind);
  info.set_rank(static_cast<uint32_t>(e.rank));
  info.set_stored_bytes(static_cast<uint64_t>(e.stored_bytes()));
  info.set_resident_bytes(static_cast<uint64_t>(e.resident_bytes));
  info.set_sha256(e.sha256);
  info.set_visibility(e.shared ? v1::VISIBILITY_SHARED : v1::VISIBILITY_PRIVATE);
  info.set_state(ToProto(stack_->cache->StateOf(StoredAdapterKey(e.id))));
  info.set_description(e.description);
  info.set_created_unix_ms(e.created_unix_ms);
  info.set_watermark_flag(e.watermark_flag);
  std::ifstream in(stack_->store->PathOf(e) + "/" + kAdapterConfigFile);
  std::stringstream ss;
  ss << in.rdbuf();
  info.set_config_json(ss.str());
  return info;
}

std::vector<std::string> AdapterCatalog::StartupAdapterNames() const { return stack_->startup_adapters->Names(); }

std::vector<v1::AdapterInfo> AdapterCatalog::List(const Tenant& tenant) const {
  std::vector<v1::AdapterInfo> out;
  if (!stack_->store) return out;
  for (const StoredAdapter& e : stack_->store->List()) {
    if (e.owner == tenant.id || tenant.admin()) out.push_back(Describe(e));
  }
  return out;
}

absl::StatusOr<v1::AdapterInfo> AdapterCatalog::Get(const Tenant& tenant,
                                                    const std::string& reference) const {
  TESSERA_ASSIGN_OR_RETURN(StoredAdapter e, FindForManage(tenant, reference, "inspect"));
  return Describe(e);
}

absl::Status AdapterCatalog::Delete(const Tenant& tenant, const std::string& reference) {
  TESSERA_ASSIGN_OR_RETURN(StoredAdapter e, FindForManage(tenant, reference, "delete"));
  TESSERA_RETURN_IF_ERROR(stack_->store->Remove(e.owner, e.name));
  stack_->cache->Erase(StoredAdapterKey(e.id));  // running requests keep their pinned copy
  spdlog::info("adapter {} deleted by tenant {}", e.reference(), tenant.id);
  return absl::OkStatus();
}

absl::StatusOr<v1::AdapterInfo> AdapterCatalog::Prefetch(const Tenant& tenant, const std::string& reference,
                                                         absl::Duration timeout,
                                                         const std::function<bool()>& cancelled) {
  TESSERA_ASSIGN_OR_RETURN(StoredAdapter e, FindForManage(tenant, reference, "prefetch"));
  TESSERA_RETURN_IF_ERROR(
      stack_->cache->Prefetch(StoredAdapterKey(e.id), timeout, cancelled));
  return Describe(e);
}

absl::StatusOr<std::unique_ptr<AdapterUpload>> AdapterCatalog::BeginUpload(
    const Tenant& tenant, const v1::UploadMetadata& metadata) {
  TESSERA_RETURN_IF_ERROR(RequireStore());
  TESSERA_RETURN_IF_ERROR(ValidateName(metadata.name(), "adapter name"));
  if (metadata.description().size() > kMaxDescriptionBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the description is ", metadata.description().size(),
                                                   " bytes, over the limit of ", kMaxDescriptionBytes));
  }
  if (metadata.kind().size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("unknown adapter kind '", Excerpt(metadata.kind(), 16), "'"));
  }
  if (stack_->store->Find(tenant.id, metadata.name())) {
    return absl::AlreadyExistsError(absl::StrCat("adapter '", tenant.id, "/", metadata.name(),
                                                 "' already exists; delete it first or choose another name"));
  }
  int64_t count = 0, bytes = 0;
  stack_->store->Usage(tenant.id, &count, &bytes);
  if (count >= tenant.max_adapters) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant.id, "' already stores ", count,
                                                     " adapters, its quota; delete one first"));
  }
  if (bytes >= tenant.max_adapter_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant.id, "' already stores ", bytes,
                                                     " bytes of adapters, its quota; delete one first"));
  }
  return stack_->store->BeginUpload(std::min(max_upload_bytes_, tenant.max_adapter_bytes - bytes));
}

absl::Status AdapterCatalog::CheckCredentialClaims(const Tenant& registrant, const std::string& credential_id,
                                                   const WatermarkCredentials& credentials) const {
  if (!stack_->store) return absl::OkStatus();
  const VerifyOptions options;
  for (const StoredAdapter& e : stack_->store->List()) {
    // Only LoRA-shaped adapters of the passport's rank can carry it.
    if (e.owner == registrant.id || (e.kind != "lora" && e.kind != "seal") || e.rank != credentials.rank) {
      continue;
    }
    absl::StatusOr<std::shared_ptr<const Adapter>> a = stack_->LoadAdapterByKey(StoredAdapterKey(e.id));
    if (!a.ok() || !WatermarkShapesMatch(**a, credentials)) continue;
    const double score = WatermarkScore(**a, credentials);
    if (score < options.threshold) continue;
    spdlog::warn(
        "AUDIT watermark-conflict action=refuse-registration registrant={} credential={} hosted={} "
        "hosted_since_unix_ms={} score={:.4f}",
        registrant.id, credential_id, e.reference(), e.created_unix_ms, score);
    return absl::PermissionDeniedError(
        "these credentials claim an adapter that another tenant already hosts; the earlier hosted upload "
        "wins, so they cannot be registered (the conflict was logged for the administrators)");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AdapterInfo> AdapterCatalog::FinishUpload(const Tenant& tenant,
                                                             const v1::UploadMetadata& metadata,
                                                             std::unique_ptr<AdapterUpload> upload,
                                                             const std::string& sha256_hex) {
  if (!upload->has_config() || !upload->has_model()) {
    return absl::InvalidArgumentError(absl::StrCat("upload needs both ", kAdapterConfigFile, " and ",
                                                   kAdapterModelFile, " before the sha256 message"));
  }
  const std::string actual = upload->Sha256Hex();
  if (absl::AsciiStrToLower(sha256_hex) != actual) {
    return absl::DataLossError(absl::StrCat("sha256 mismatch: the client sent ", Excerpt(sha256_hex, 64),
                                            " but the received bytes hash to ", actual,
                                            "; the upload was corrupted in transit, send it again"));
  }
  const std::string reference = absl::StrCat(tenant.id, "/", metadata.name());
  absl::StatusOr<std::shared_ptr<const Adapter>> adapter =
      LoadAdapter(reference, upload->dir(), stack_->model->config, stack_->adapter_limits);
  if (!adapter.ok()) {
    const absl::StatusCode code = adapter.status().code();
    const bool server_side = code == absl::StatusCode::kInternal || code == absl::StatusCode::kUnavailable ||
                             code == absl::StatusCode::kResourceExhausted;
    return absl::Status(server_side ? code : absl::StatusCode::kInvalidArgument,
                        absl::StrCat("adapter rejected: ", adapter.status().message()));
  }
  const Adapter& a = **adapter;
  if (!metadata.kind().empty() && metadata.kind() != a.DisplayKind()) {
    return absl::InvalidArgumentError(absl::StrCat("metadata says kind '", metadata.kind(), "' but ",
                                                   kAdapterConfigFile, " describes a '", a.DisplayKind(),
                                                   "' adapter"));
  }
  // Theft screening: every other tenant's registered watermark whose shapes
  // fit. The reply never names the other tenant; the audit log does.
  std::string flag;
  if (stack_->vault) {
    for (const VaultEntry& v : stack_->vault->All()) {
      if (v.owner == tenant.id || !WatermarkShapesMatch(a, *v.credentials)) continue;
      const double score = WatermarkScore(a, *v.credentials);
      const VerifyOptions options;
      if (score < options.threshold ||
          v.credentials->FalsePositiveRate(options.threshold) > options.max_false_positive_rate) {
        continue;
      }
      const bool reject = on_watermark_match_ == WatermarkMatchAction::kReject;
      spdlog::warn("AUDIT watermark-match action={} uploader={} adapter={} credential={}/{} score={:.4f}",
                   reject ? "reject" : "flag", tenant.id, reference, v.owner, v.id, score);
      if (on_match_) on_match_(reject ? "reject" : "flag");
      if (reject) {
        return absl::PermissionDeniedError(
            "upload refused: this adapter carries another tenant's registered ownership watermark (SEAL); "
            "the "
            "attempt was logged for the administrators");
      }
      flag = absl::StrCat("matches a registered watermark (score ", absl::StrFormat("%.4f", score), ")");
      break;
    }
  }
  // Quotas again, now that the size is known (BeginUpload checked the count
  // before any byte arrived; a concurrent upload may have landed since).
  int64_t count = 0, stored = 0;
  stack_->store->Usage(tenant.id, &count, &stored);
  if (count >= tenant.max_adapters || stored + upload->bytes() > tenant.max_adapter_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant '", tenant.id, "' would exceed its quota (", tenant.max_adapters, " adapters, ",
                     tenant.max_adapter_bytes, " bytes); delete an adapter first"));
  }
  StoredAdapter meta;
  meta.watermark_flag = flag;
  meta.owner = tenant.id;
  meta.name = metadata.name();
  meta.kind = a.DisplayKind();
  meta.description = metadata.description();
  meta.shared = metadata.visibility() == v1::VISIBILITY_SHARED;
  meta.resident_bytes = a.parameter_bytes;
  for (const AdapterModule& m : a.modules) {
    if (m.lora) meta.rank = std::max(meta.rank, m.lora->rank);
  }
  TESSERA_ASSIGN_OR_RETURN(StoredAdapter entry,
                           stack_->store->Commit(std::move(upload), std::move(meta),
                                                 {tenant.max_adapters, tenant.max_adapter_bytes}));
  spdlog::info("adapter {} uploaded ({} bytes, {}, sha256 {})", entry.reference(), entry.stored_bytes(),
               entry.kind, entry.sha256);
  return Describe(entry);
}

}  // namespace tessera
