// The server's Prometheus metrics: one place that names every family and
// connects it to its source (gRPC calls, scheduler, adapter store and cache).
//
//   tessera_requests_total{rpc,code}              counter, every RPC by final status
//   tessera_queue_time_ms                          histogram, submission to admission
//   tessera_time_to_first_token_ms                 histogram
//   tessera_inter_token_latency_ms                 histogram
//   tessera_queue_length, tessera_running_requests gauges
//   tessera_kv_blocks_used, tessera_kv_blocks_free gauges
//   tessera_kv_preemptions                         gauge, requests preempted by recompute
//   tessera_adapters_stored, tessera_adapters_resident, tessera_adapter_resident_bytes  gauges
//   tessera_adapter_slots, tessera_adapter_slots_free  gauges, the adapter pool
//   tessera_adapter_loads_total{result}, tessera_adapter_evictions_total  counters
//   tessera_adapter_load_ms                        histogram
//   tessera_tokens_total{tenant,kind}              counter, kind = prompt | completion
//   tessera_watermark_matches_total{action}        counter, uploads carrying another tenant's watermark
//
// Thread safety: thread-safe; the observers may run on any thread.
#ifndef TESSERA_SERVER_API_SERVER_METRICS_H_
#define TESSERA_SERVER_API_SERVER_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "grpcpp/support/server_interceptor.h"
#include "server/api/metrics.h"
#include "server/serving/serving_stack.h"

namespace tessera {

class ServerMetrics {
 public:
  ServerMetrics();

  // Observers to put in ServingOptions before BuildServingStack.
  Scheduler::Observer SchedulerObserver();
  AdapterCache::Observer CacheObserver();
  // Gauges read from the stack at scrape time; the stack must outlive the
  // registry's scrapes (stop the HTTP server first).
  void AttachStack(const ServingStack* stack);
  // Counts every RPC by method and final status code.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();
  // Counts uploads that matched another tenant's watermark, by action.
  std::function<void(const std::string& action)> WatermarkMatchHook();

  MetricsRegistry& registry() { return registry_; }

 private:
  MetricsRegistry registry_;
  Histogram& queue_ms_;
  Histogram& ttft_ms_;
  Histogram& itl_ms_;
  Histogram& load_ms_;
  Counter& evictions_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_SERVER_METRICS_H_
