#include "server/api/server_metrics.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/version.h"
#include "prometheus/text_serializer.h"

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
  CountingInterceptor(prometheus::Family<prometheus::Counter>* family, std::string rpc,
                      grpc::ServerContextBase* context)
      : family_(family), rpc_(std::move(rpc)), context_(context) {}
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
    family_->Add({{"rpc", rpc_}, {"code", absl::StatusCodeToString(code)}}).Increment();
  }

  prometheus::Family<prometheus::Counter>* family_;
  std::string rpc_;
  grpc::ServerContextBase* context_;
  std::chrono::system_clock::time_point deadline_ = std::chrono::system_clock::time_point::max();
  bool counted_ = false;
};

class CountingInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingInterceptorFactory(prometheus::Family<prometheus::Counter>* family) : family_(family) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new CountingInterceptor(family_, MethodLabel(info->method()), info->server_context());
  }

 private:
  prometheus::Family<prometheus::Counter>* family_;
};


prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& r, const std::string& name,
                                                   const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& r, const std::string& name,
                                                           const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}
prometheus::Gauge& Gauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return GaugeFamily(r, name, help).Add({});
}
prometheus::Counter& Counter(prometheus::Registry& r, const std::string& name, const std::string& help,
                             const prometheus::Labels& labels = {}) {
  return CounterFamily(r, name, help).Add(labels);
}

std::string TenantLabel(const std::string& tenant) { return tenant.empty() ? "-" : tenant; }

// "v0.1.0+abc" -> version "0.1.0", commit "abc" (unknown without one).
std::pair<std::string, std::string> VersionAndCommit() {
  std::string v = Version();
  const size_t plus = v.find('+');
  if (plus == std::string::npos) return {v, "unknown"};
  return {v.substr(0, plus), v.substr(plus + 1)};
}

// A comma-separated list of at most `max` names with a positive count.
std::string AdapterList(const std::map<std::string, int32_t>& counts, int32_t max) {
  std::vector<std::string> names;
  for (const auto& [name, n] : counts) {
    if (n <= 0) continue;
    if (static_cast<int32_t>(names.size()) >= max) break;
    names.push_back(name);
  }
  return absl::StrJoin(names, ",");
}

}  // namespace

prometheus::Histogram::BucketBoundaries LatencyBucketsSeconds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

ServerMetrics::ServerMetrics(ServerMetricsOptions options)
    : options_(std::move(options)),
      buckets_(LatencyBucketsSeconds()),
      registry_(std::make_shared<prometheus::Registry>()),
      rpc_requests_(CounterFamily(*registry_, "tessera_requests_total", "gRPC calls by method and final status code")),
      http_requests_(CounterFamily(*registry_, "tessera_http_requests_total",
                                   "HTTP API calls by route and HTTP status code")),
      generations_(CounterFamily(*registry_, "tessera_generation_requests_total",
                                 "Finished generation requests by tenant, adapter kind and finish reason "
                                 "(error: the request failed)")),
      prompt_tokens_(CounterFamily(*registry_, "tessera_prompt_tokens_total", "Prompt tokens prefilled, per tenant")),
      generation_tokens_(
          CounterFamily(*registry_, "tessera_generation_tokens_total", "Completion tokens generated, per tenant")),
      queue_seconds_(HistogramFamily(*registry_, "tessera_request_queue_seconds",
                                     "Time from submission to admission into the batch")),
      ttft_seconds_(HistogramFamily(*registry_, "tessera_time_to_first_token_seconds",
                                    "Time from submission to the first generated token")),
      itl_seconds_(HistogramFamily(*registry_, "tessera_inter_token_latency_seconds",
                                   "Time between consecutive tokens of a request")),
      duration_seconds_(HistogramFamily(*registry_, "tessera_request_duration_seconds",
                                        "Time from submission to finish (end-to-end latency)")),
      adapter_requests_(CounterFamily(*registry_, "tessera_adapter_requests_total",
                                      "Generation requests per adapter (OWNER/NAME; 'other' beyond "
                                      "--metrics-max-adapter-series adapters)")),
      watermark_matches_(CounterFamily(*registry_, "tessera_watermark_matches_total",
                                       "Uploads carrying another tenant's registered SEAL watermark, by action")),
      lora_info_(GaugeFamily(*registry_, "tessera_lora_requests_info",
                             "Adapters of running and waiting requests and the most adapters one batch can "
                             "hold, in vLLM's vllm:lora_requests_info shape; the value is the scrape time")),
      cache_hits_(Counter(*registry_, "tessera_adapter_cache_hits_total",
                          "Requests whose adapter was resident when they arrived")),
      cache_misses_(Counter(*registry_, "tessera_adapter_cache_misses_total",
                            "Requests whose adapter had to be loaded (or was loading) when they arrived")),
      loads_ok_(Counter(*registry_, "tessera_adapter_loads_total", "Adapter loads by result", {{"result", "ok"}})),
      loads_error_(
          Counter(*registry_, "tessera_adapter_loads_total", "Adapter loads by result", {{"result", "error"}})),
      evictions_(Counter(*registry_, "tessera_adapter_evictions_total", "Adapters evicted from the resident cache")),
      load_seconds_(HistogramFamily(*registry_, "tessera_adapter_load_seconds",
                                    "Adapter load time (read, verify, convert, copy into its slot)")
                        .Add({}, LatencyBucketsSeconds())),
      waiting_(Gauge(*registry_, "tessera_num_requests_waiting", "Requests waiting for admission")),
      running_(Gauge(*registry_, "tessera_num_requests_running", "Requests in the running batch")),
      kv_used_(Gauge(*registry_, "tessera_kv_blocks_used", "KV cache blocks held by requests")),
      kv_total_(Gauge(*registry_, "tessera_kv_blocks_capacity", "KV cache blocks in all")),
      kv_usage_(Gauge(*registry_, "tessera_kv_cache_usage_perc", "Fraction of KV cache blocks in use, 0 to 1")),
      preemptions_(Counter(*registry_, "tessera_preemptions_total", "Requests preempted by recompute")),
      stored_(Gauge(*registry_, "tessera_adapters_stored", "Adapters in the durable store")),
      resident_(Gauge(*registry_, "tessera_adapters_resident", "Adapters loaded in memory (start-up ones included)")),
      resident_bytes_(Gauge(*registry_, "tessera_adapter_resident_bytes", "Bytes of cached stored adapters")),
      slots_(Gauge(*registry_, "tessera_adapter_slots", "Adapter pool slots, start-up adapters' included")),
      slots_free_(Gauge(*registry_, "tessera_adapter_slots_free",
                        "Adapter pool slots holding no adapter (neither resident nor loading)")) {
  const auto [version, commit] = VersionAndCommit();
  GaugeFamily(*registry_, "tessera_build_info", "Build of this server; the value is always 1")
      .Add({{"version", version}, {"commit", commit}, {"backend", options_.backend}})
      .Set(1);
  // Series that exist before their first event, so dashboards see zeros.
  for (const char* action : {"reject", "flag"}) watermark_matches_.Add({{"action", action}});
}

std::string ServerMetrics::AdapterLabel(const std::string& adapter) {
  if (adapter_series_.count(adapter) > 0) return adapter;
  if (static_cast<int32_t>(adapter_series_.size()) >= options_.max_adapter_series) return "other";
  adapter_series_.insert(adapter);
  return adapter;
}

Scheduler::Observer ServerMetrics::SchedulerObserver() {
  Scheduler::Observer o;
  o.on_submit = [this](const Scheduler::RequestTags& t) {
    MutexLock lock(&mu_);
    ++waiting_by_adapter_[t.adapter];
    if (!t.adapter.empty()) adapter_requests_.Add({{"adapter", AdapterLabel(t.adapter)}}).Increment();
  };
  o.on_admit = [this](const Scheduler::RequestTags& t, double ms) {
    queue_seconds_.Add({{"tenant", TenantLabel(t.tenant)}}, buckets_).Observe(ms / 1e3);
    MutexLock lock(&mu_);
    --waiting_by_adapter_[t.adapter];
    ++running_by_adapter_[t.adapter];
  };
  o.on_first_token = [this](const Scheduler::RequestTags& t, double ms) {
    ttft_seconds_.Add({{"tenant", TenantLabel(t.tenant)}, {"adapter_kind", t.adapter_kind}}, buckets_)
        .Observe(ms / 1e3);
  };
  o.on_token = [this](const Scheduler::RequestTags& t, double ms) {
    itl_seconds_.Add({{"tenant", TenantLabel(t.tenant)}, {"adapter_kind", t.adapter_kind}}, buckets_)
        .Observe(ms / 1e3);
  };
  o.on_finish = [this](const Scheduler::RequestTags& t, const GenerationResult& r, bool admitted) {
    const std::string tenant = TenantLabel(t.tenant);
    const std::string kind = t.adapter_kind[0] != '\0' ? t.adapter_kind : "unknown";
    generations_
        .Add({{"tenant", tenant},
              {"adapter_kind", kind},
              {"finish_reason", r.status.ok() ? FinishReasonName(r.finish_reason) : "error"}})
        .Increment();
    prompt_tokens_.Add({{"tenant", tenant}}).Increment(admitted ? r.prompt_tokens : 0);
    generation_tokens_.Add({{"tenant", tenant}}).Increment(r.completion_tokens);
    if (admitted) {
      duration_seconds_.Add({{"tenant", tenant}, {"adapter_kind", kind}}, buckets_)
          .Observe(r.total_ms / 1e3);
    }
    MutexLock lock(&mu_);
    std::map<std::string, int32_t>& from = admitted ? running_by_adapter_ : waiting_by_adapter_;
    auto it = from.find(t.adapter);
    if (it != from.end() && --it->second <= 0) from.erase(it);
  };
  return o;
}

AdapterCache::Observer ServerMetrics::CacheObserver() {
  AdapterCache::Observer o;
  o.on_load = [this](double ms, bool ok) {
    load_seconds_.Observe(ms / 1e3);
    (ok ? loads_ok_ : loads_error_).Increment();
  };
  o.on_evict = [this] { evictions_.Increment(); };
  o.on_want = [this](bool hit) { (hit ? cache_hits_ : cache_misses_).Increment(); };
  return o;
}

void ServerMetrics::AttachStack(const ServingStack* stack) { stack_.store(stack); }

void ServerMetrics::Refresh() {
  // The stack's locks are taken without mu_: the scheduler calls the
  // observers (which take mu_) while holding its own.
  const ServingStack* stack = stack_.load();
  if (stack == nullptr) return;
  const Scheduler::Stats s = stack->scheduler->stats();
  const double stored = stack->store ? static_cast<double>(stack->store->List().size()) : 0.0;
  const AdapterCache::Stats c = stack->cache->stats();
  waiting_.Set(s.queued);
  running_.Set(s.running);
  kv_used_.Set(s.kv_blocks_used);
  kv_total_.Set(s.kv_blocks_total);
  kv_usage_.Set(s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0.0);
  stored_.Set(stored);
  resident_.Set(c.resident);
  resident_bytes_.Set(static_cast<double>(c.resident_bytes));
  slots_.Set(c.slots);
  slots_free_.Set(c.free_slots);
  MutexLock lock(&mu_);
  const double preemptions = static_cast<double>(s.preemptions);
  if (preemptions > preemptions_seen_) preemptions_.Increment(preemptions - preemptions_seen_);
  preemptions_seen_ = std::max(preemptions_seen_, preemptions);
  // One series whose labels carry the lists, as vLLM exports it.
  std::map<std::string, int32_t> running = running_by_adapter_, waiting = waiting_by_adapter_;
  running.erase("");
  waiting.erase("");
  if (lora_info_series_ != nullptr) lora_info_.Remove(lora_info_series_);
  lora_info_series_ = &lora_info_.Add({{"running_lora_adapters", AdapterList(running, options_.max_adapter_series)},
                                       {"waiting_lora_adapters", AdapterList(waiting, options_.max_adapter_series)},
                                       {"max_lora", std::to_string(c.slots)}});
  lora_info_series_->Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

std::string ServerMetrics::Render() {
  std::vector<prometheus::MetricFamily> families;
  {
    MutexLock lock(&render_mu_);  // one scrape at a time: Refresh's gauges, then their collection
    Refresh();
    families = registry_->Collect();
  }
  std::sort(families.begin(), families.end(),
            [](const prometheus::MetricFamily& a, const prometheus::MetricFamily& b) { return a.name < b.name; });
  return prometheus::TextSerializer().Serialize(families);
}

std::function<void(const std::string&)> ServerMetrics::WatermarkMatchHook() {
  return [this](const std::string& action) { watermark_matches_.Add({{"action", action}}).Increment(); };
}

void ServerMetrics::CountHttpRequest(const std::string& route, int code) {
  http_requests_.Add({{"route", route}, {"code", std::to_string(code)}}).Increment();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerMetrics::InterceptorFactory() {
  return std::make_unique<CountingInterceptorFactory>(&rpc_requests_);
}

}  // namespace tessera
