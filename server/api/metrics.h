// Process metrics in the Prometheus text exposition format (version 0.0.4),
// and the HTTP endpoint (--metrics-listen) that serves them at /metrics.
//
// A family is a metric name with its help text and type; each distinct label
// set is one series of the family. Getting a series returns a reference that
// stays valid for the registry's lifetime, so hot paths look it up once.
//
// Thread safety: everything is thread-safe. Counter/Gauge/Histogram updates
// are lock-free or take only the series' own lock.
#ifndef TESSERA_SERVER_API_METRICS_H_
#define TESSERA_SERVER_API_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mutex.h"

namespace tessera {

using MetricLabels = std::map<std::string, std::string>;  // name -> value

class Counter {
 public:
  void Increment(double v = 1);  // v >= 0
  double value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v); }
  void Add(double v);
  double value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // sorted, +Inf implied
  void Observe(double v);
  // Snapshot: cumulative counts per bound (+Inf last), sum and count.
  void Read(std::vector<uint64_t>* cumulative, double* sum, uint64_t* count) const;
  const std::vector<double>& upper_bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  mutable Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket (not cumulative), +Inf last
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// Buckets in milliseconds for latencies from 1 ms to 60 s.
std::vector<double> LatencyBucketsMs();

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();  // out of line: Family is incomplete here

  // The series of family `name` with `labels`, created on first use. A
  // family's type and help come from its first registration; using one name
  // with two types is a programming error (CHECK-fails).
  Counter& GetCounter(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                          const MetricLabels& labels = {});
  // A gauge whose value is read by calling fn at each Render. fn must be
  // thread-safe and outlive the registry's use.
  void AddGaugeCallback(const std::string& name, const std::string& help, std::function<double()> fn,
                        const MetricLabels& labels = {});

  // Every family, sorted by name, with # HELP and # TYPE lines. Label values
  // are escaped (\\, \", \n).
  std::string Render() const;

 private:
  struct Family;
  Family& GetFamily(const std::string& name, const std::string& help, const char* type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

// Serves GET /metrics (text/plain; version=0.0.4) from a background thread.
class MetricsHttpServer {
 public:
  // listen is "HOST:PORT"; port 0 picks a free one (see port()).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& listen,
                                                                  const MetricsRegistry* registry);
  ~MetricsHttpServer();  // Stop()
  void Stop();
  int port() const { return port_; }

 private:
  struct Impl;
  MetricsHttpServer() = default;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_API_METRICS_H_
