#include "server/api/metrics.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

constexpr char kCounter[] = "counter";
constexpr char kGauge[] = "gauge";
constexpr char kHistogram[] = "histogram";
constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

[[noreturn]] void Fatal(const std::string& message) {
  spdlog::critical("metrics: {}", message);
  std::abort();
}

// Number text for the exposition format: integral values without exponent
// (up to 1e15), otherwise the shortest representation that round-trips.
std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";  // also -0
  char buf[64];
  std::to_chars_result r;
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  } else {
    r = std::to_chars(buf, buf + sizeof(buf), v);
  }
  return std::string(buf, r.ptr);
}

void AppendEscaped(std::string* out, std::string_view s, bool escape_quote) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '"':
        if (escape_quote) {
          out->append("\\\"");
        } else {
          out->push_back(c);
        }
        break;
      default:
        out->push_back(c);
    }
  }
}

// {a="x",b="y"} (labels in map order), with le="..." appended when given;
// empty when there are no labels at all.
void AppendLabels(std::string* out, const MetricLabels& labels, const std::string* le) {
  if (labels.empty() && le == nullptr) return;
  out->push_back('{');
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out->push_back(',');
    first = false;
    out->append(name).append("=\"");
    AppendEscaped(out, value, /*escape_quote=*/true);
    out->push_back('"');
  }
  if (le != nullptr) {
    if (!first) out->push_back(',');
    out->append("le=\"").append(*le).push_back('"');
  }
  out->push_back('}');
}

void AppendSample(std::string* out, const std::string& name, const MetricLabels& labels,
                  const std::string* le, double value) {
  out->append(name);
  AppendLabels(out, labels, le);
  out->push_back(' ');
  out->append(FormatNumber(value));
  out->push_back('\n');
}

bool IsMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return !(s.size() >= 2 && s[0] == '_' && s[1] == '_');  // reserved
}

void CheckLabels(const std::string& family, const MetricLabels& labels, bool histogram) {
  for (const auto& [name, value] : labels) {
    if (!IsLabelName(name)) Fatal("invalid label name '" + name + "' for metric " + family);
    if (histogram && name == "le")
      Fatal("label 'le' is reserved for histogram buckets (metric " + family + ")");
  }
}

// Sorted, without duplicates, NaN or +Inf (the +Inf bucket is implied).
std::vector<double> NormalizeBounds(std::vector<double> bounds) {
  bounds.erase(
      std::remove_if(bounds.begin(), bounds.end(), [](double b) { return std::isnan(b) || b == INFINITY; }),
      bounds.end());
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  return bounds;
}

}  // namespace

// --- Counter / Gauge / Histogram -------------------------------------------

void Counter::Increment(double v) {
  if (!(v >= 0)) return;  // counters only go up; negative or NaN is ignored
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

void Gauge::Add(double v) {
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(NormalizeBounds(std::move(upper_bounds))), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  // Bucket i counts v <= bounds_[i]; NaN and anything above the last bound
  // land in +Inf.
  size_t i = bounds_.size();
  if (!std::isnan(v)) i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  MutexLock lock(&mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::Read(std::vector<uint64_t>* cumulative, double* sum, uint64_t* count) const {
  MutexLock lock(&mu_);
  if (cumulative != nullptr) {
    cumulative->resize(counts_.size());
    uint64_t running = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      running += counts_[i];
      (*cumulative)[i] = running;
    }
  }
  if (sum != nullptr) *sum = sum_;
  if (count != nullptr) *count = count_;
}

std::vector<double> LatencyBucketsMs() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};
}

// --- MetricsRegistry ---------------------------------------------------------

struct MetricsRegistry::Family {
  struct Series {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> callback;  // callback gauge
  };

  std::string name;
  std::string help;
  std::string type;
  std::map<MetricLabels, Series> series;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::GetFamily(const std::string& name, const std::string& help,
                                                    const char* type) {
  auto it = families_.find(name);
  if (it != families_.end()) {
    if (it->second->type != type) {
      Fatal("metric " + name + " registered as " + it->second->type + " and as " + type);
    }
    return *it->second;
  }
  if (!IsMetricName(name)) Fatal("invalid metric name '" + name + "'");
  auto family = std::make_unique<Family>();
  family->name = name;
  family->help = help;
  family->type = type;
  Family& ref = *family;
  families_.emplace(name, std::move(family));
  return ref;
}

Counter& MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const MetricLabels& labels) {
  MutexLock lock(&mu_);
  Family& family = GetFamily(name, help, kCounter);
  Family::Series& series = family.series[labels];
  if (series.counter == nullptr) {
    CheckLabels(name, labels, /*histogram=*/false);
    series.counter = std::make_unique<Counter>();
  }
  return *series.counter;
}

Gauge& MetricsRegistry::GetGauge(const std::string& name, const std::string& help,
                                 const MetricLabels& labels) {
  MutexLock lock(&mu_);
  Family& family = GetFamily(name, help, kGauge);
  Family::Series& series = family.series[labels];
  if (series.callback) Fatal("gauge " + name + " series is already a callback gauge");
  if (series.gauge == nullptr) {
    CheckLabels(name, labels, /*histogram=*/false);
    series.gauge = std::make_unique<Gauge>();
  }
  return *series.gauge;
}

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         const std::vector<double>& bounds, const MetricLabels& labels) {
  MutexLock lock(&mu_);
  Family& family = GetFamily(name, help, kHistogram);
  Family::Series& series = family.series[labels];
  if (series.histogram == nullptr) {
    CheckLabels(name, labels, /*histogram=*/true);
    series.histogram = std::make_unique<Histogram>(bounds);
  } else if (series.histogram->upper_bounds() != NormalizeBounds(bounds)) {
    Fatal("histogram " + name + " series requested with different bucket bounds");
  }
  return *series.histogram;
}

void MetricsRegistry::AddGaugeCallback(const std::string& name, const std::string& help,
                                       std::function<double()> fn, const MetricLabels& labels) {
  MutexLock lock(&mu_);
  Family& family = GetFamily(name, help, kGauge);
  Family::Series& series = family.series[labels];
  if (series.gauge != nullptr) Fatal("gauge " + name + " series is already a plain gauge");
  CheckLabels(name, labels, /*histogram=*/false);
  series.callback = std::move(fn);  // a later registration replaces the callback
}

std::string MetricsRegistry::Render() const {
  // Snapshot the structure under the lock; read values (and run callbacks)
  // outside it, so a callback may itself use the registry. Series objects are
  // never removed, so the pointers stay valid.
  struct SeriesSnapshot {
    const MetricLabels* labels;
    const Counter* counter;
    const Gauge* gauge;
    const Histogram* histogram;
    std::function<double()> callback;
  };
  struct FamilySnapshot {
    const Family* family;
    std::vector<SeriesSnapshot> series;
  };
  std::vector<FamilySnapshot> snapshot;
  {
    MutexLock lock(&mu_);
    snapshot.reserve(families_.size());
    for (const auto& [name, family] : families_) {
      FamilySnapshot& f = snapshot.emplace_back();
      f.family = family.get();
      f.series.reserve(family->series.size());
      for (const auto& [labels, s] : family->series) {
        if (!s.counter && !s.gauge && !s.histogram && !s.callback) continue;
        f.series.push_back({&labels, s.counter.get(), s.gauge.get(), s.histogram.get(), s.callback});
      }
    }
  }

  std::string out;
  std::vector<uint64_t> cumulative;
  for (const FamilySnapshot& f : snapshot) {
    const Family& family = *f.family;
    out.append("# HELP ").append(family.name).push_back(' ');
    AppendEscaped(&out, family.help, /*escape_quote=*/false);
    out.push_back('\n');
    out.append("# TYPE ").append(family.name).push_back(' ');
    out.append(family.type).push_back('\n');
    for (const SeriesSnapshot& s : f.series) {
      if (s.counter != nullptr) {
        AppendSample(&out, family.name, *s.labels, nullptr, s.counter->value());
      } else if (s.gauge != nullptr) {
        AppendSample(&out, family.name, *s.labels, nullptr, s.gauge->value());
      } else if (s.callback) {
        AppendSample(&out, family.name, *s.labels, nullptr, s.callback());
      } else if (s.histogram != nullptr) {
        double sum = 0;
        uint64_t count = 0;
        s.histogram->Read(&cumulative, &sum, &count);
        const std::vector<double>& bounds = s.histogram->upper_bounds();
        const std::string bucket_name = family.name + "_bucket";
        for (size_t i = 0; i < cumulative.size(); ++i) {
          const std::string le = i < bounds.size() ? FormatNumber(bounds[i]) : "+Inf";
          AppendSample(&out, bucket_name, *s.labels, &le, static_cast<double>(cumulative[i]));
        }
        AppendSample(&out, family.name + "_sum", *s.labels, nullptr, sum);
        AppendSample(&out, family.name + "_count", *s.labels, nullptr, static_cast<double>(count));
      }
    }
  }
  return out;
}

// --- MetricsHttpServer -------------------------------------------------------

struct MetricsHttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> thread_done{false};
  Mutex stop_mu;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& listen,
                                                                            const MetricsRegistry* registry) {
  const auto malformed = [&listen]() {
    return absl::InvalidArgumentError("invalid metrics listen address '" + listen +
                                      "': expected HOST:PORT, e.g. 0.0.0.0:9090");
  };
  // HOST:PORT, or [IPV6]:PORT.
  std::string host;
  std::string port_text;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      return malformed();
    host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return malformed();
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
    if (host.find(':') != std::string::npos) return malformed();  // bare IPv6 needs brackets
  }
  int port = -1;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (host.empty() || port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port < 0 || port > 65535) {
    return malformed();
  }
  if (registry == nullptr) return absl::InvalidArgumentError("metrics server needs a registry");

  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default sets SO_REUSEPORT, which lets a second process bind the
  // same port and silently share it; SO_REUSEADDR alone only skips TIME_WAIT.
  impl.server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  impl.server.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->Render(), kContentType);
  });
  impl.server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("not found: metrics are served at /metrics\n", "text/plain; charset=utf-8");
    }
  });

  if (port == 0) {
    port = impl.server.bind_to_any_port(host);
  } else if (!impl.server.bind_to_port(host, port)) {
    port = -1;
  }
  if (port < 0) {
    return absl::UnavailableError("cannot bind the metrics endpoint to " + listen +
                                  " (address in use or not available on this host)");
  }
  server->port_ = port;

  impl.thread = std::thread([&impl] {
    impl.server.listen_after_bind();
    impl.thread_done.store(true);
  });
  // httplib's stop() is a no-op until the accept loop runs; wait for it so a
  // prompt Stop() cannot miss it.
  while (!impl.server.is_running() && !impl.thread_done.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (impl.thread_done.load()) {
    impl.thread.join();
    return absl::UnavailableError("metrics endpoint on " + listen + " stopped right after it started");
  }
  spdlog::info("serving metrics on http://{}:{}/metrics",
               host.find(':') != std::string::npos ? "[" + host + "]" : host, port);
  return server;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (impl_ == nullptr) return;
  MutexLock lock(&impl_->stop_mu);
  if (!impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

}  // namespace tessera
