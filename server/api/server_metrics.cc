#include "server/api/server_metrics.h"

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/interceptor.h"

namespace tessera {
namespace {

// The label of a method: its name when a service of this process defines it
// (the generated descriptor pool holds every linked service), else "unknown",
// so clients cannot create series by calling made-up methods.
std::string MethodLabel(const char* method) {
  std::string m = method ? method : "";
  // "/tessera.v1.Inference/Generate" -> "tessera.v1.Inference/Generate"
  if (!m.empty() && m[0] == '/') m.erase(0, 1);
  const size_t slash = m.find('/');
  if (slash == std::string::npos || m.size() > 200) return "unknown";
  std::string full = m;
  full[slash] = '.';
  if (google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full) == nullptr) return "unknown";
  return m;
}

// Counts one RPC when its status is sent, or, for a call that ends without
// sending one (the client cancelled, the deadline passed), when it is
// destroyed: as CANCELLED or DEADLINE_EXCEEDED. A status of OK sent for a
// call the client had already cancelled counts as CANCELLED. A call that ends
// without a status near its deadline counts as DEADLINE_EXCEEDED: the client's
// own timer fires first, and its cancellation can reach the server a little
// before the server's copy of the deadline passes.
class CountingInterceptor final : public grpc::experimental::Interceptor {
 public:
  CountingInterceptor(MetricsRegistry* registry, std::string rpc, grpc::ServerContextBase* context)
      : registry_(registry), rpc_(std::move(rpc)), context_(context) {}
  // Runs while the call is being torn down: uses only what Intercept saved.
  ~CountingInterceptor() override {
    if (!counted_) Count(AtDeadline(deadline_) ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kCancelled);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (context_ != nullptr) deadline_ = context_->deadline();
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      auto code = static_cast<absl::StatusCode>(methods->GetSendStatus().error_code());
      if (code == absl::StatusCode::kOk && context_ != nullptr && context_->IsCancelled()) {
        code = EndedWithoutStatus();
      }
      Count(code);
    }
    methods->Proceed();
  }

 private:
  static bool AtDeadline(std::chrono::system_clock::time_point deadline) {
    constexpr std::chrono::milliseconds kSlack(250);
    return deadline != std::chrono::system_clock::time_point::max() &&
           deadline <= std::chrono::system_clock::now() + kSlack;
  }
  absl::StatusCode EndedWithoutStatus() const {
    if (context_ != nullptr && AtDeadline(context_->deadline())) return absl::StatusCode::kDeadlineExceeded;
    return absl::StatusCode::kCancelled;
  }
  void Count(absl::StatusCode code) {
    counted_ = true;
    registry_
        ->GetCounter("tessera_requests_total", "RPCs by method and final status code",
                     {{"rpc", rpc_}, {"code", absl::StatusCodeToString(code)}})
        .Increment();
  }

  MetricsRegistry* registry_;
  std::string rpc_;
  grpc::ServerContextBase* context_;
  std::chrono::system_clock::time_point deadline_ = std::chrono::system_clock::time_point::max();
  bool counted_ = false;
};

class CountingInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingInterceptorFactory(MetricsRegistry* registry) : registry_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new CountingInterceptor(registry_, MethodLabel(info->method()), info->server_context());
  }

 private:
  MetricsRegistry* registry_;
};

}  // namespace

ServerMetrics::ServerMetrics()
    : queue_ms_(registry_.GetHistogram(
          "tessera_queue_time_ms", "Time from submission to admission into the batch", LatencyBucketsMs())),
      ttft_ms_(registry_.GetHistogram("tessera_time_to_first_token_ms",
                                      "Time from submission to the first token", LatencyBucketsMs())),
      itl_ms_(registry_.GetHistogram("tessera_inter_token_latency_ms",
                                     "Time between consecutive tokens of a request", LatencyBucketsMs())),
      load_ms_(registry_.GetHistogram("tessera_adapter_load_ms", "Adapter load time (read, verify, convert)",
                                      LatencyBucketsMs())),
      evictions_(registry_.GetCounter("tessera_adapter_evictions_total",
                                      "Adapters evicted from the resident cache")) {
  // Families that exist before their first event, so dashboards see zeros.
  registry_.GetCounter("tessera_adapter_loads_total", "Adapter loads by result", {{"result", "ok"}});
  registry_.GetCounter("tessera_adapter_loads_total", "Adapter loads by result", {{"result", "error"}});
}

Scheduler::Observer ServerMetrics::SchedulerObserver() {
  Scheduler::Observer o;
  o.on_admit = [this](const std::string&, double ms) { queue_ms_.Observe(ms); };
  o.on_first_token = [this](const std::string&, double ms) { ttft_ms_.Observe(ms); };
  o.on_token = [this](double ms) { itl_ms_.Observe(ms); };
  o.on_finish = [this](const std::string& tenant, int32_t prompt, int32_t completion) {
    const std::string t = tenant.empty() ? "-" : tenant;
    const char* help = "Tokens processed per tenant: prompt tokens prefilled and completion tokens generated";
    registry_.GetCounter("tessera_tokens_total", help, {{"tenant", t}, {"kind", "prompt"}}).Increment(prompt);
    registry_.GetCounter("tessera_tokens_total", help, {{"tenant", t}, {"kind", "completion"}})
        .Increment(completion);
  };
  return o;
}

AdapterCache::Observer ServerMetrics::CacheObserver() {
  AdapterCache::Observer o;
  o.on_load = [this](double ms, bool ok) {
    load_ms_.Observe(ms);
    registry_
        .GetCounter("tessera_adapter_loads_total", "Adapter loads by result",
                    {{"result", ok ? "ok" : "error"}})
        .Increment();
  };
  o.on_evict = [this] { evictions_.Increment(); };
  return o;
}

void ServerMetrics::AttachStack(const ServingStack* stack) {
  const Scheduler* scheduler = stack->scheduler.get();
  registry_.AddGaugeCallback("tessera_queue_length", "Requests waiting for admission",
                             [scheduler] { return scheduler->stats().queued; });
  registry_.AddGaugeCallback("tessera_running_requests", "Requests in the running batch",
                             [scheduler] { return scheduler->stats().running; });
  registry_.AddGaugeCallback("tessera_kv_blocks_used", "KV cache blocks held by requests",
                             [scheduler] { return scheduler->stats().kv_blocks_used; });
  registry_.AddGaugeCallback("tessera_kv_preemptions", "Requests preempted by recompute since start",
                             [scheduler] { return static_cast<double>(scheduler->stats().preemptions); });
  registry_.AddGaugeCallback("tessera_kv_blocks_free", "KV cache blocks free", [scheduler] {
    const Scheduler::Stats s = scheduler->stats();
    return s.kv_blocks_total - s.kv_blocks_used;
  });
  const AdapterStore* store = stack->store.get();
  registry_.AddGaugeCallback("tessera_adapters_stored", "Adapters in the durable store",
                             [store] { return store ? static_cast<double>(store->List().size()) : 0.0; });
  const AdapterCache* cache = stack->cache.get();
  registry_.AddGaugeCallback("tessera_adapters_resident",
                             "Adapters loaded in memory (start-up ones included)",
                             [cache] { return cache->stats().resident; });
  registry_.AddGaugeCallback("tessera_adapter_resident_bytes", "Bytes of cached stored adapters",
                             [cache] { return static_cast<double>(cache->stats().resident_bytes); });
  registry_.AddGaugeCallback("tessera_adapter_slots_free",
                             "Adapter pool slots holding no adapter (neither resident nor loading)",
                             [cache] { return cache->stats().free_slots; });
  registry_.AddGaugeCallback("tessera_adapter_slots", "Adapter pool slots, start-up adapters' included",
                             [cache] { return cache->stats().slots; });
}

std::function<void(const std::string&)> ServerMetrics::WatermarkMatchHook() {
  return [this](const std::string& action) {
    registry_
        .GetCounter("tessera_watermark_matches_total",
                    "Uploads carrying another tenant's registered SEAL watermark, by action",
                    {{"action", action}})
        .Increment();
  };
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerMetrics::InterceptorFactory() {
  return std::make_unique<CountingInterceptorFactory>(&registry_);
}

}  // namespace tessera
