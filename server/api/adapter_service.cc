#include "server/api/adapter_service.h"

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/exception_guard.h"
#include "common/json_util.h"
#include "server/api/call_auth.h"
#include "server/api/request_conversion.h"
#include "server/api/upload_session.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

// How long PrefetchAdapter waits when the client set no deadline.
constexpr absl::Duration kPrefetchTimeout = absl::Minutes(5);

absl::Duration TimeLeft(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return kPrefetchTimeout;
  return std::min(kPrefetchTimeout, absl::FromChrono(deadline) - absl::Now());
}

// Reads the upload stream into an UploadSession. Finishes with the first
// error; the session removes its files unless committed.
class UploadReactor final : public grpc::ServerReadReactor<v1::UploadAdapterRequest> {
 public:
  UploadReactor(const TenantDirectory& tenants, AdapterCatalog* catalog, UploadTracker* tracker,
                grpc::CallbackServerContext* context, v1::AdapterInfo* response)
      : tracker_(tracker), response_(response) {
    absl::StatusOr<Tenant> tenant = AuthenticateCall(tenants, *context);
    if (!tenant.ok()) {
      Fail(tenant.status());
      return;
    }
    if (absl::Status s = tracker_->Add(this, tenant->id, context); !s.ok()) {
      Fail(s);
      return;
    }
    tracked_ = true;
    session_ = std::make_unique<UploadSession>(catalog, *std::move(tenant));
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (finished_) return;
    if (!ok && tracker_->TimedOut(this)) {
      Fail(absl::DeadlineExceededError(absl::StrCat(
          "the upload sent nothing for ", absl::FormatDuration(tracker_->limits().idle_timeout),
          " (--upload-idle-timeout); nothing was stored")));
      return;
    }
    if (!tracker_->Touch(this)) {
      Fail(absl::DeadlineExceededError("the upload was idle for too long (--upload-idle-timeout); nothing was stored"));
      return;
    }
    if (!ok) {  // the client half-closed (or vanished) before sending the sha256
      Fail(session_->EndedEarly());
      return;
    }
    absl::StatusOr<UploadSession::Next> next =
        GuardExceptions("UploadAdapter", [&] { return session_->Add(message_); });
    if (!next.ok()) {
      Fail(next.status());
      return;
    }
    if (*next == UploadSession::Next::kMore) {
      StartRead(&message_);
      return;
    }
    // Validation reads and converts the whole adapter: off the gRPC callback
    // thread. Nothing touches `this` after Finish.
    if (!tracker_->Touch(this, /*busy=*/true)) {
      Fail(absl::DeadlineExceededError("the upload was idle for too long (--upload-idle-timeout); nothing was stored"));
      return;
    }
    finished_ = true;
    std::thread([this] {
      absl::StatusOr<v1::AdapterInfo> info = session_->Commit();
      spdlog::info("AUDIT adapter-create tenant={} adapter={} visibility={} result={}", session_->tenant().id,
                   session_->metadata().name(),
                   session_->metadata().visibility() == v1::VISIBILITY_SHARED ? "shared" : "private",
                   absl::StatusCodeToString(info.status().code()));
      if (info.ok()) *response_ = *std::move(info);
      session_.reset();
      Finish(ToGrpcStatus(info.status()));
    }).detach();
  }

  void OnDone() override {
    if (tracked_) tracker_->Remove(this);
    delete this;
  }

 private:
  void Fail(const absl::Status& status) {
    session_.reset();
    finished_ = true;
    Finish(ToGrpcStatus(status));
  }

  UploadTracker* tracker_;
  bool tracked_ = false;
  v1::AdapterInfo* response_;
  v1::UploadAdapterRequest message_;
  std::unique_ptr<UploadSession> session_;
  bool finished_ = false;
};

}  // namespace

UploadTracker::UploadTracker(UploadLimits limits) : limits_(limits) {
  reaper_ = std::thread([this] { Reap(); });
}

UploadTracker::~UploadTracker() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  stop_cv_.SignalAll();
  reaper_.join();
}

absl::Status UploadTracker::Add(const void* key, const std::string& tenant,
                                grpc::CallbackServerContext* context) {
  MutexLock lock(&mu_);
  if (static_cast<int32_t>(entries_.size()) >= limits_.max_total) {
    return absl::ResourceExhaustedError(absl::StrCat("the server has ", entries_.size(),
                                                     " uploads in flight, its limit (--max-uploads-total); "
                                                     "retry later"));
  }
  int32_t& mine = by_tenant_[tenant];
  if (mine >= limits_.max_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant, "' has ", mine,
                                                     " uploads in flight, its limit (--max-uploads-per-tenant); "
                                                     "finish or cancel one first"));
  }
  ++mine;
  entries_[key] = Entry{tenant, context, absl::Now()};
  return absl::OkStatus();
}

bool UploadTracker::Touch(const void* key, bool busy) {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return true;
  if (it->second.timed_out) return false;
  it->second.last_activity = absl::Now();
  it->second.busy = it->second.busy || busy;
  return true;
}

bool UploadTracker::TimedOut(const void* key) {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  return it != entries_.end() && it->second.timed_out;
}

void UploadTracker::Remove(const void* key) {
  MutexLock cancel_lock(&cancel_mu_);
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  auto t = by_tenant_.find(it->second.tenant);
  if (t != by_tenant_.end() && --t->second <= 0) by_tenant_.erase(t);
  entries_.erase(it);
}

void UploadTracker::Reap() {
  const absl::Duration period = std::min(absl::Seconds(1), limits_.idle_timeout / 4);
  while (true) {
    {
      MutexLock lock(&mu_);
      stop_cv_.WaitWithTimeout(&mu_, period);
      if (stopping_) return;
    }
    MutexLock cancel_lock(&cancel_mu_);
    std::vector<std::pair<grpc::CallbackServerContext*, std::string>> idle;
    {
      MutexLock lock(&mu_);
      const absl::Time now = absl::Now();
      for (auto& [key, e] : entries_) {
        if (e.busy || e.timed_out || now - e.last_activity < limits_.idle_timeout) continue;
        e.timed_out = true;
        idle.push_back({e.context, e.tenant});
      }
    }
    // Without mu_ (a reaction run inline may need it), but with cancel_mu_:
    // Remove waits, so each context is still alive here.
    for (const auto& [context, tenant] : idle) {
      spdlog::warn("upload by tenant '{}' idle for {}; cancelling it (--upload-idle-timeout)", tenant,
                   absl::FormatDuration(limits_.idle_timeout));
      context->TryCancel();
    }
  }
}

AdapterService::AdapterService(const TenantDirectory* tenants, AdapterCatalog* catalog, UploadLimits limits)
    : tenants_(tenants), catalog_(catalog), uploads_(limits) {}

grpc::ServerReadReactor<v1::UploadAdapterRequest>* AdapterService::UploadAdapter(
    grpc::CallbackServerContext* context, v1::AdapterInfo* response) {
  return new UploadReactor(*tenants_, catalog_, &uploads_, context, response);
}

grpc::ServerUnaryReactor* AdapterService::ListAdapters(grpc::CallbackServerContext* context,
                                                       const v1::ListAdaptersRequest* request,
                                                       v1::ListAdaptersResponse* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  return FinishUnary(context, GuardExceptions("ListAdapters", [&] {
                       for (v1::AdapterInfo& info : catalog_->List(*tenant)) {
                         *response->add_adapters() = std::move(info);
                       }
                       return absl::OkStatus();
                     }));
}

grpc::ServerUnaryReactor* AdapterService::GetAdapter(grpc::CallbackServerContext* context,
                                                     const v1::GetAdapterRequest* request,
                                                     v1::AdapterInfo* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  absl::StatusOr<v1::AdapterInfo> info =
      GuardExceptions("GetAdapter", [&] { return catalog_->Get(*tenant, request->reference()); });
  if (info.ok()) *response = *std::move(info);
  return FinishUnary(context, info.status());
}

grpc::ServerUnaryReactor* AdapterService::DeleteAdapter(grpc::CallbackServerContext* context,
                                                        const v1::DeleteAdapterRequest* request,
                                                        v1::DeleteAdapterResponse* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  const absl::Status s =
      GuardExceptions("DeleteAdapter", [&] { return catalog_->Delete(*tenant, request->reference()); });
  spdlog::info("AUDIT adapter-delete tenant={} adapter={} result={}", tenant->id, Excerpt(request->reference()),
               absl::StatusCodeToString(s.code()));
  return FinishUnary(context, s);
}

grpc::ServerUnaryReactor* AdapterService::PrefetchAdapter(grpc::CallbackServerContext* context,
                                                          const v1::PrefetchAdapterRequest* request,
                                                          v1::AdapterInfo* response) {
  absl::StatusOr<Tenant> tenant = AuthenticateCall(*tenants_, *context);
  if (!tenant.ok()) return FinishUnary(context, tenant.status());
  // Waits on this callback thread for the load, stopping on cancellation or
  // the deadline; prefetch is an explicit, rare call.
  absl::StatusOr<v1::AdapterInfo> info = GuardExceptions("PrefetchAdapter", [&] {
    return catalog_->Prefetch(*tenant, request->reference(), TimeLeft(*context),
                              [context] { return context->IsCancelled(); });
  });
  if (info.ok()) *response = *std::move(info);
  return FinishUnary(context, info.status());
}

}  // namespace tessera
