// The server's Prometheus metrics, on prometheus-cpp: one place that names
// every family and connects it to its source (gRPC and HTTP calls, the
// scheduler, the adapter store and cache). Names follow Prometheus'
// conventions (base units, `_total` counters); README "Metrics" lists them.
//
//   tessera_build_info{version,commit,backend}            gauge, always 1
//   tessera_requests_total{rpc,code}                      counter, gRPC calls by final status
//   tessera_http_requests_total{route,code}               counter, HTTP API calls by status
//   tessera_generation_requests_total{tenant,adapter_kind,finish_reason}  counter, finished generations
//   tessera_prompt_tokens_total{tenant}, tessera_generation_tokens_total{tenant}  counters
//   tessera_request_queue_seconds{tenant}                 histogram, submission to admission
//   tessera_time_to_first_token_seconds{tenant,adapter_kind}  histogram
//   tessera_inter_token_latency_seconds{tenant,adapter_kind}  histogram
//   tessera_request_duration_seconds{tenant,adapter_kind}     histogram, submission to finish
//   tessera_num_requests_waiting, tessera_num_requests_running  gauges
//   tessera_kv_blocks_used, tessera_kv_blocks_capacity       gauges
//   tessera_kv_cache_usage_perc                           gauge, used/total in [0, 1]
//   tessera_preemptions_total                             counter, requests preempted by recompute
//   tessera_adapter_cache_hits_total, tessera_adapter_cache_misses_total  counters, per request
//   tessera_adapter_loads_total{result}, tessera_adapter_evictions_total  counters
//   tessera_adapter_load_seconds                          histogram
//   tessera_adapters_stored, tessera_adapters_resident, tessera_adapter_resident_bytes  gauges
//   tessera_adapter_slots, tessera_adapter_slots_free     gauges, the adapter pool
//   tessera_adapter_requests_total{adapter}               counter, per adapter (bounded, see below)
//   tessera_lora_requests_info{running_lora_adapters,waiting_lora_adapters,max_lora}
//                                                         gauge in vLLM's shape, value = scrape time
//   tessera_watermark_matches_total{action}               counter, uploads carrying another tenant's watermark
//
// Label cardinality: `tenant` takes the configured tenants' ids, `rpc` the
// methods this server defines (else "unknown"), `route` the HTTP API's
// routes (else "other"), `adapter_kind` four values. `adapter` (the adapter's
// OWNER/NAME reference) gets its own series for the first
// `max_adapter_series` adapters seen; later ones count under "other". The
// adapter lists of tessera_lora_requests_info name at most
// `max_adapter_series` adapters each.
//
// Thread safety: thread-safe; the observers may run on any thread.
#ifndef TESSERA_SERVER_API_SERVER_METRICS_H_
#define TESSERA_SERVER_API_SERVER_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/mutex.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/serving/serving_stack.h"

namespace tessera {

// Buckets in seconds for latencies from 1 ms to 60 s.
prometheus::Histogram::BucketBoundaries LatencyBucketsSeconds();

struct ServerMetricsOptions {
  std::string backend = "cpu";  // tessera_build_info's label
  int32_t max_adapter_series = 64;  // --metrics-max-adapter-series
};

class ServerMetrics {
 public:
  explicit ServerMetrics(ServerMetricsOptions options = {});

  // Observers to put in ServingOptions before BuildServingStack.
  Scheduler::Observer SchedulerObserver();
  AdapterCache::Observer CacheObserver();
  // Gauges read from the stack at scrape time; the stack must outlive every
  // Render (stop the HTTP servers first).
  void AttachStack(const ServingStack* stack);
  // Counts every RPC by method and final status code.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();
  // Counts uploads that matched another tenant's watermark, by action.
  std::function<void(const std::string& action)> WatermarkMatchHook();
  // One HTTP API call: route is the matched pattern ("/v1/completions"),
  // code the HTTP status sent.
  void CountHttpRequest(const std::string& route, int code);

  // The text exposition format (0.0.4) of every metric, scrape-time gauges
  // refreshed first.
  std::string Render();

 private:
  std::string AdapterLabel(const std::string& adapter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(render_mu_) ABSL_LOCKS_EXCLUDED(mu_);

  const ServerMetricsOptions options_;
  // Built once: every histogram series observes on the hot path (per token).
  const prometheus::Histogram::BucketBoundaries buckets_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& rpc_requests_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Counter>& generations_;
  prometheus::Family<prometheus::Counter>& prompt_tokens_;
  prometheus::Family<prometheus::Counter>& generation_tokens_;
  prometheus::Family<prometheus::Histogram>& queue_seconds_;
  prometheus::Family<prometheus::Histogram>& ttft_seconds_;
  prometheus::Family<prometheus::Histogram>& itl_seconds_;
  prometheus::Family<prometheus::Histogram>& duration_seconds_;
  prometheus::Family<prometheus::Counter>& adapter_requests_;
  prometheus::Family<prometheus::Counter>& watermark_matches_;
  prometheus::Family<prometheus::Gauge>& lora_info_;
  prometheus::Counter& cache_hits_;
  prometheus::Counter& cache_misses_;
  prometheus::Counter& loads_ok_;
  prometheus::Counter& loads_error_;
  prometheus::Counter& evictions_;
  prometheus::Histogram& load_seconds_;
  // Scrape-time values.
  prometheus::Gauge& waiting_;
  prometheus::Gauge& running_;
  prometheus::Gauge& kv_used_;
  prometheus::Gauge& kv_total_;
  prometheus::Gauge& kv_usage_;
  prometheus::Counter& preemptions_;
  prometheus::Gauge& stored_;
  prometheus::Gauge& resident_;
  prometheus::Gauge& resident_bytes_;
  prometheus::Gauge& slots_;
  prometheus::Gauge& slots_free_;

  std::atomic<const ServingStack*> stack_{nullptr};
  Mutex render_mu_;
  // Taken by the observers, which the scheduler may call holding its own
  // locks: never held while calling into the stack.
  Mutex mu_;
  std::set<std::string> adapter_series_ ABSL_GUARDED_BY(mu_);
  // Requests per adapter reference, queued and in the batch.
  std::map<std::string, int32_t> waiting_by_adapter_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int32_t> running_by_adapter_ ABSL_GUARDED_BY(mu_);
  prometheus::Gauge* lora_info_series_ ABSL_GUARDED_BY(mu_) = nullptr;
  double preemptions_seen_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_SERVER_METRICS_H_
