#include "server/api/ownership_service.h"

#include <thread>

#include "common/exception_guard.h"
#include "common/json_util.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/api/call_auth.h"
#include "server/api/request_conversion.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

absl::Status NoVault() {
  return absl::FailedPreconditionError(
      "this server has no watermark vault; start tessera-server with --data-dir DIR");
}

}  // namespace

OwnershipService::OwnershipService(const TenantDirectory* tenants, const AdapterCatalog* catalog,
                                   WatermarkVault* vault)
    : tenants_(tenants), catalog_(catalog), vault_(vault) {}

absl::Status OwnershipService::Register(const grpc::CallbackServerContext& context,
                                        const v1::RegisterWatermarkRequest& request,
                                        v1::RegisterWatermarkResponse* response) {
  TESSERA_ASSIGN_OR_RETURN(Tenant tenant, AuthenticateCall(*tenants_, context));
  if (!vault_) return NoVault();
  TESSERA_RETURN_IF_ERROR(ValidateName(request.credential_id(), "credential id"));
  if (request.files().passport_safetensors().empty() || request.files().raw_factors_safetensors().empty()) {
    return absl::InvalidArgumentError("send both the passport and the raw factors (owner_secret/ layout)");
  }
  TESSERA_ASSIGN_OR_RETURN(
      VaultEntry entry,
      vault_->Register(tenant.id, request.credential_id(), request.files().passport_safetensors(),
                       request.files().raw_factors_safetensors(), [&](const WatermarkCredentials& c) {
                         return catalog_->CheckCredentialClaims(tenant, request.credential_id(), c);
                       }));
  spdlog::info("AUDIT watermark-register tenant={} credential={} result=ok", tenant.id, entry.id);
  response->set_credential_id(entry.id);
  response->set_owner(entry.owner);
  response->set_rank(static_cast<uint32_t>(entry.credentials->rank));
  response->set_modules(static_cast<uint32_t>(entry.credentials->modules.size()));
  return absl::OkStatus();
}

absl::Status OwnershipService::Verify(const grpc::CallbackServerContext& context,
                                      const v1::VerifyOwnershipRequest& request,
                                      v1::VerifyOwnershipResponse* response) {
  TESSERA_ASSIGN_OR_RETURN(Tenant tenant, AuthenticateCall(*tenants_, context));
  if (request.adapter_id().empty()) return absl::InvalidArgumentError("adapter_id is required");
  std::shared_ptr<const WatermarkCredentials> credentials;
  std::string source;
  switch (request.credentials_case()) {
    case v1::VerifyOwnershipRequest::kCredentialId: {
      if (!vault_) return NoVault();
      std::string owner = tenant.id, id = request.credential_id();
      if (const size_t slash = id.find('/'); slash != std::string::npos) {
        owner = id.substr(0, slash);
        id = id.substr(slash + 1);
        if (owner != tenant.id && !tenant.admin()) {
          return absl::PermissionDeniedError("only admins may use another tenant's credentials");
        }
      }
      TESSERA_RETURN_IF_ERROR(ValidateName(owner, "credential owner"));
      TESSERA_RETURN_IF_ERROR(ValidateName(id, "credential id"));
      TESSERA_ASSIGN_OR_RETURN(VaultEntry entry, vault_->Find(owner, id));
      credentials = entry.credentials;
      source = absl::StrCat("credential ", owner, "/", id);
      break;
    }
    case v1::VerifyOwnershipRequest::kFiles: {
      if (!vault_) return NoVault();
      TESSERA_ASSIGN_OR_RETURN(credentials,
                               vault_->ParseTransient(request.files().passport_safetensors(),
                                                      request.files().raw_factors_safetensors()));
      source = "credentials sent with the request";
      break;
    }
    default:
      return absl::InvalidArgumentError(
          "give a registered credential_id, or the passport and raw factors files (owner_secret/ layout)");
  }
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<const Adapter> adapter,
                           catalog_->LoadForVerification(tenant, request.adapter_id()));
  const WatermarkVerdict v = VerifyWatermark(*adapter, *credentials);
  response->set_verdict(v.owned ? v1::OWNERSHIP_VERDICT_OWNED : v1::OWNERSHIP_VERDICT_NOT_OWNED);
  response->set_score(v.score);
  response->set_threshold(v.threshold);
  response->set_false_positive_rate(v.false_positive_rate);
  response->set_null_trials(static_cast<uint32_t>(v.null_trials));
  response->set_null_mean(v.null_mean);
  response->set_null_std(v.null_std);
  response->set_null_max(v.null_max);
  response->set_note(v.note);
  for (const WatermarkLayerStat& s : v.layers) {
    v1::WatermarkModuleStat* m = response->add_layers();
    m->set_layer(static_cast<uint32_t>(s.layer));
    m->set_module(LinearModuleName(s.module));
    m->set_pearson(s.pearson);
    m->set_sign_agreement(s.sign_agreement);
    m->set_psnr_db(s.psnr_db);
    m->set_adapted(s.adapted);
  }
  spdlog::info("AUDIT ownership-verify tenant={} adapter={} {} verdict={} score={:.4f}", tenant.id,
               request.adapter_id(), source, v.owned ? "owned" : "not_owned", v.score);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* OwnershipService::RegisterWatermark(grpc::CallbackServerContext* context,
                                                              const v1::RegisterWatermarkRequest* request,
                                                              v1::RegisterWatermarkResponse* response) {
  // Registration computes a null distribution: off the gRPC callback thread.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  workers_.Post([this, context, request, response, reactor] {
    reactor->Finish(ToGrpcStatus(
        GuardExceptions("RegisterWatermark", [&] { return Register(*context, *request, response); })));
  });
  return reactor;
}

grpc::ServerUnaryReactor* OwnershipService::VerifyOwnership(grpc::CallbackServerContext* context,
                                                            const v1::VerifyOwnershipRequest* request,
                                                            v1::VerifyOwnershipResponse* response) {
  // The null distribution costs CPU: compute it off the gRPC callback thread.
  // request and response stay valid until the reactor finishes.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  workers_.Post([this, context, request, response, reactor] {
    const absl::Status s = GuardExceptions("VerifyOwnership", [&] { return Verify(*context, *request, response); });
    if (!s.ok()) {
      spdlog::info("AUDIT ownership-verify adapter={} result={}", Excerpt(request->adapter_id()),
                   absl::StatusCodeToString(s.code()));
    }
    reactor->Finish(ToGrpcStatus(s));
  });
  return reactor;
}

}  // namespace tessera
