#include "server/api/metrics.h"

#include <httplib.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/prometheus.h"

namespace tessera {
namespace {

using ::tessera::testing::ParsePrometheusText;
using ::tessera::testing::SumSeries;
using ::testing::HasSubstr;

TEST(MetricsRenderTest, CounterGaugeHistogramExactText) {
  MetricsRegistry registry;
  registry.GetCounter("a_requests_total", "Requests served.", {{"method", "GET"}, {"code", "500"}})
      .Increment();
  registry.GetCounter("a_requests_total", "Requests served.", {{"method", "GET"}, {"code", "200"}})
      .Increment(3);
  registry.GetGauge("c_queue_depth", "Queue depth.").Set(7.5);
  Histogram& h = registry.GetHistogram("b_latency_ms", "Latency.", {1, 2.5}, {{"route", "x"}});
  h.Observe(0.5);
  h.Observe(2);
  h.Observe(11);

  EXPECT_EQ(registry.Render(),
            "# HELP a_requests_total Requests served.\n"
            "# TYPE a_requests_total counter\n"
            "a_requests_total{code=\"200\",method=\"GET\"} 3\n"
            "a_requests_total{code=\"500\",method=\"GET\"} 1\n"
            "# HELP b_latency_ms Latency.\n"
            "# TYPE b_latency_ms histogram\n"
            "b_latency_ms_bucket{route=\"x\",le=\"1\"} 1\n"
            "b_latency_ms_bucket{route=\"x\",le=\"2.5\"} 2\n"
            "b_latency_ms_bucket{route=\"x\",le=\"+Inf\"} 3\n"
            "b_latency_ms_sum{route=\"x\"} 13.5\n"
            "b_latency_ms_count{route=\"x\"} 3\n"
            "# HELP c_queue_depth Queue depth.\n"
            "# TYPE c_queue_depth gauge\n"
            "c_queue_depth 7.5\n");
}

TEST(MetricsRenderTest, EmptyRegistryRendersNothing) { EXPECT_EQ(MetricsRegistry().Render(), ""); }

TEST(MetricsRenderTest, HistogramWithoutLabels) {
  MetricsRegistry registry;
  registry.GetHistogram("h", "H.", {10}).Observe(3);
  EXPECT_EQ(registry.Render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"10\"} 1\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum 3\n"
            "h_count 1\n");
}

TEST(MetricsRenderTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  registry.GetCounter("esc_total", "Line one\nline \"two\" with \\ backslash", {{"v", "a\\b\"c\nd"}})
      .Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP esc_total Line one\\nline \"two\" with \\\\ backslash\n"
            "# TYPE esc_total counter\n"
            "esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");

  auto parsed = ParsePrometheusText(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->size(), 1u);
  EXPECT_EQ(parsed->count("esc_total{v=\"a\\\\b\\\"c\\nd\"}"), 1u);
  EXPECT_EQ(SumSeries(*parsed, "esc_total", {{"v", "a\\b\"c\nd"}}), 1);
}

TEST(MetricsRenderTest, NumberFormatting) {
  const std::vector<std::pair<double, std::string>> cases = {
      {1e6, "1000000"},
      {123456789012.0, "123456789012"},
      {-42, "-42"},
      {0.1, "0.1"},
      {2.5e-7, "2.5e-07"},
      {1e20, "1e+20"},
      {-0.0, "0"},
      {std::numeric_limits<double>::infinity(), "+Inf"},
      {-std::numeric_limits<double>::infinity(), "-Inf"},
      {std::numeric_limits<double>::quiet_NaN(), "NaN"},
  };
  for (const auto& [value, text] : cases) {
    MetricsRegistry r;
    r.GetGauge("g", "G.").Set(value);
    EXPECT_EQ(r.Render(), "# HELP g G.\n# TYPE g gauge\ng " + text + "\n") << value;
  }
}

TEST(HistogramTest, CumulativeBucketsSumAndCount) {
  Histogram h({5, 1, 2, 2});  // unsorted, duplicate: normalized
  EXPECT_EQ(h.upper_bounds(), (std::vector<double>{1, 2, 5}));
  for (double v : {0.0, 1.0, 1.5, 2.0, 4.0, 5.0, 6.0, 100.0}) h.Observe(v);
  std::vector<uint64_t> cumulative;
  double sum = 0;
  uint64_t count = 0;
  h.Read(&cumulative, &sum, &count);
  // le is inclusive: 1 lands in le=1, 2 in le=2, 5 in le=5.
  EXPECT_EQ(cumulative, (std::vector<uint64_t>{2, 4, 6, 8}));
  EXPECT_DOUBLE_EQ(sum, 119.5);
  EXPECT_EQ(count, 8u);
}

TEST(HistogramTest, LatencyBucketsAreSortedMilliseconds) {
  const std::vector<double> b = LatencyBucketsMs();
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(b.front(), 1);
  EXPECT_EQ(b.back(), 60000);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
}

TEST(MetricsRegistryTest, SameSeriesSameObject) {
  MetricsRegistry registry;
  Counter& a = registry.GetCounter("x_total", "X.", {{"k", "1"}});
  Counter& b = registry.GetCounter("x_total", "ignored later help", {{"k", "1"}});
  Counter& c = registry.GetCounter("x_total", "X.", {{"k", "2"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  a.Increment(2);
  EXPECT_EQ(b.value(), 2);
  EXPECT_THAT(registry.Render(), HasSubstr("# HELP x_total X.\n"));
}

TEST(MetricsRegistryTest, CounterIgnoresNegativeIncrements) {
  Counter c;
  c.Increment(2.5);
  c.Increment(-1);
  c.Increment(std::nan(""));
  EXPECT_EQ(c.value(), 2.5);
}

TEST(MetricsRegistryTest, GaugeSetAndAdd) {
  Gauge g;
  g.Set(10);
  g.Add(-2.5);
  g.Add(1);
  EXPECT_EQ(g.value(), 8.5);
}

TEST(MetricsRegistryTest, CallbackGaugeIsSampledAtRender) {
  MetricsRegistry registry;
  std::atomic<int> depth{3};
  registry.AddGaugeCallback("queue_depth", "Queued requests.", [&depth] { return depth.load(); },
                            {{"pool", "main"}});
  EXPECT_THAT(registry.Render(), HasSubstr("queue_depth{pool=\"main\"} 3\n"));
  depth = 11;
  EXPECT_THAT(registry.Render(), HasSubstr("queue_depth{pool=\"main\"} 11\n"));
  // A callback gauge and a plain gauge can share the family.
  registry.GetGauge("queue_depth", "Queued requests.", {{"pool", "aux"}}).Set(1);
  auto parsed = ParsePrometheusText(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(SumSeries(*parsed, "queue_depth"), 12);
}

TEST(MetricsRegistryTest, CallbackMayUseTheRegistry) {
  MetricsRegistry registry;
  registry.AddGaugeCallback("reentrant", "Calls back into the registry.",
                            [&registry] { return registry.GetCounter("inner_total", "Inner.").value() + 1; });
  auto parsed = ParsePrometheusText(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("reentrant"), 1);
}

TEST(MetricsRegistryTest, ConcurrentUpdatesSumExactly) {
  MetricsRegistry registry;
  constexpr int kThreads = 4;
  constexpr int kIterations = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&registry] {
      for (int i = 0; i < kIterations; ++i) {
        registry.GetCounter("hits_total", "Hits.", {{"shard", "all"}}).Increment();
        registry.GetGauge("level", "Level.").Add(0.5);
        registry.GetHistogram("obs", "Obs.", LatencyBucketsMs()).Observe(i % 3);
      }
    });
  }
  // Rendering while the writers run must be safe too.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ParsePrometheusText(registry.Render()).ok());
  for (auto& t : threads) t.join();

  EXPECT_EQ(registry.GetCounter("hits_total", "Hits.", {{"shard", "all"}}).value(), kThreads * kIterations);
  EXPECT_EQ(registry.GetGauge("level", "Level.").value(), kThreads * kIterations * 0.5);
  auto parsed = ParsePrometheusText(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("hits_total{shard=\"all\"}"), 40000);
  EXPECT_EQ(parsed->at("obs_count"), 40000);
  EXPECT_EQ(parsed->at("obs_bucket{le=\"+Inf\"}"), 40000);
}

TEST(MetricsRegistryTest, RenderRoundTripsThroughParser) {
  MetricsRegistry registry;
  registry.GetCounter("req_total", "Requests.", {{"model", "m1"}, {"status", "ok"}}).Increment(5);
  registry.GetCounter("req_total", "Requests.", {{"model", "m2"}, {"status", "ok"}}).Increment(2);
  registry.GetCounter("req_total", "Requests.", {{"model", "m1"}, {"status", "error"}}).Increment(1);
  registry.GetGauge("kv_blocks_free", "Free blocks.").Set(128);
  Histogram& h =
      registry.GetHistogram("ttft_ms", "Time to first token.", LatencyBucketsMs(), {{"model", "m1"}});
  h.Observe(3);
  h.Observe(700);
  h.Observe(90000);

  auto parsed = ParsePrometheusText(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("req_total{model=\"m1\",status=\"ok\"}"), 5);
  EXPECT_EQ(parsed->at("kv_blocks_free"), 128);
  EXPECT_EQ(SumSeries(*parsed, "req_total"), 8);
  EXPECT_EQ(SumSeries(*parsed, "req_total", {{"model", "m1"}}), 6);
  EXPECT_EQ(SumSeries(*parsed, "req_total", {{"status", "ok"}}), 7);
  EXPECT_EQ(SumSeries(*parsed, "req_total", {{"status", "missing"}}), 0);
  EXPECT_EQ(parsed->at("ttft_ms_bucket{le=\"5\",model=\"m1\"}"), 1);
  EXPECT_EQ(parsed->at("ttft_ms_bucket{le=\"1000\",model=\"m1\"}"), 2);
  EXPECT_EQ(parsed->at("ttft_ms_bucket{le=\"60000\",model=\"m1\"}"), 2);
  EXPECT_EQ(parsed->at("ttft_ms_bucket{le=\"+Inf\",model=\"m1\"}"), 3);
  EXPECT_EQ(parsed->at("ttft_ms_sum{model=\"m1\"}"), 90703);
  EXPECT_EQ(parsed->at("ttft_ms_count{model=\"m1\"}"), 3);
  EXPECT_EQ(SumSeries(*parsed, "ttft_ms_bucket", {{"le", "+Inf"}}), 3);
  // One bucket per bound plus +Inf, then _sum and _count.
  EXPECT_EQ(parsed->size(), 3 + 1 + LatencyBucketsMs().size() + 1 + 2);
}

TEST(MetricsDeathTest, OneNameWithTwoTypesAborts) {
  EXPECT_DEATH(
      {
        MetricsRegistry registry;
        registry.GetCounter("dual", "Dual.");
        registry.GetGauge("dual", "Dual.");
      },
      "");
}

// --- ParsePrometheusText -----------------------------------------------------

TEST(PrometheusParserTest, AcceptsValidText) {
  const std::string text =
      "# A plain comment\n"
      "# HELP m_total Help with \\\\ and \\n escapes.\n"
      "# TYPE m_total counter\n"
      "m_total{b=\"2\",a=\"1\"} 3\n"
      "m_total{a=\"x\\\"y\\\\z\\nw\",} 4 1700000000000\n"
      "\n"
      "# TYPE g gauge\n"
      "g +Inf\n"
      "# TYPE g2 gauge\n"
      "g2   -Inf\n"
      "# TYPE g3 untyped\n"
      "g3 NaN\n"
      "# TYPE s summary\n"
      "s{quantile=\"0.5\"} 1.5e3\n"
      "s_sum 10\n"
      "s_count 2\n";
  auto parsed = ParsePrometheusText(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("m_total{a=\"1\",b=\"2\"}"), 3);
  EXPECT_EQ(parsed->at("m_total{a=\"x\\\"y\\\\z\\nw\"}"), 4);
  EXPECT_EQ(parsed->at("g"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(parsed->at("g2"), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(parsed->at("g3")));
  EXPECT_EQ(parsed->at("s{quantile=\"0.5\"}"), 1500);
  EXPECT_EQ(parsed->at("s_count"), 2);
  EXPECT_EQ(SumSeries(*parsed, "m_total", {{"a", "x\"y\\z\nw"}}), 4);
  EXPECT_EQ(parsed->size(), 8u);
}

struct BadCase {
  const char* what;
  std::string text;
  int line;
};

TEST(PrometheusParserTest, RejectsMalformedLines) {
  const std::string counter = "# TYPE c counter\n";
  const std::vector<BadCase> cases = {
      {"metric name starts with a digit", counter + "1c 1\n", 2},
      {"metric name with a dash", "# TYPE c-d counter\n", 1},
      {"sample name with a dash", counter + "c-d 1\n", 2},
      {"bad label name", counter + "c{1a=\"x\"} 1\n", 2},
      {"unbalanced quote", counter + "c{a=\"x} 1\n", 2},
      {"unquoted label value", counter + "c{a=x} 1\n", 2},
      {"missing close brace", counter + "c{a=\"x\" 1\n", 2},
      {"missing close brace at end", counter + "c{a=\"x\"\n", 2},
      {"stray close brace", counter + "c} 1\n", 2},
      {"double close brace", counter + "c{a=\"x\"}} 1\n", 2},
      {"bad escape in label", counter + "c{a=\"x\\t\"} 1\n", 2},
      {"bad escape in help", "# HELP c bad \\t escape\n" + counter, 1},
      {"non-numeric value", counter + "c abc\n", 2},
      {"value with junk", counter + "c 1.5x\n", 2},
      {"hex value", counter + "c 0x10\n", 2},
      {"missing value", counter + "c\n", 2},
      {"bad timestamp", counter + "c 1 soon\n", 2},
      {"trailing text", counter + "c 1 2 3\n", 2},
      {"no TYPE line", "c 1\n", 1},
      {"TYPE only for another family", counter + "d 1\n", 2},
      {"TYPE after the sample", "c 1\n" + counter, 1},
      {"unknown type", "# TYPE c bogus\n", 1},
      {"second TYPE", counter + counter, 2},
      {"second HELP", "# HELP c a\n# HELP c b\n", 2},
      {"duplicate series", counter + "c{a=\"1\"} 1\nc{a=\"1\"} 2\n", 3},
      {"duplicate series, labels reordered", counter + "c{a=\"1\",b=\"2\"} 1\nc{b=\"2\",a=\"1\"} 2\n", 3},
      {"duplicate label", counter + "c{a=\"1\",a=\"2\"} 1\n", 2},
      {"histogram bare name", "# TYPE h histogram\nh 1\n", 2},
      {"bucket without le", "# TYPE h histogram\nh_bucket 1\n", 2},
      {"bucket of a counter", counter + "c_bucket{le=\"1\"} 1\n", 2},
      {"family not contiguous", counter + "# TYPE d gauge\nc{a=\"1\"} 1\nd 1\nc{a=\"2\"} 1\n", 5},
  };
  for (const BadCase& c : cases) {
    auto parsed = ParsePrometheusText(c.text);
    ASSERT_FALSE(parsed.ok()) << c.what;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("line " + std::to_string(c.line) + ":"))
        << c.what << ": " << parsed.status();
  }
}

TEST(PrometheusParserTest, SumSeriesMatchesExactNameOnly) {
  const std::map<std::string, double> m = {
      {"a", 1}, {"a{x=\"1\"}", 2}, {"a{x=\"2\",y=\"1\"}", 4}, {"ab{x=\"1\"}", 8}, {"a_total", 16}};
  EXPECT_EQ(SumSeries(m, "a"), 7);
  EXPECT_EQ(SumSeries(m, "a", {{"x", "1"}}), 2);
  EXPECT_EQ(SumSeries(m, "a", {{"y", "1"}}), 4);
  EXPECT_EQ(SumSeries(m, "ab"), 8);
  EXPECT_EQ(SumSeries(m, "nothing"), 0);
}

// --- MetricsHttpServer -------------------------------------------------------

TEST(MetricsHttpServerTest, ServesMetricsAnd404Elsewhere) {
  MetricsRegistry registry;
  registry.GetCounter("served_total", "Served.", {{"k", "v"}}).Increment(7);
  auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res->body, registry.Render());
  auto parsed = ParsePrometheusText(res->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("served_total{k=\"v\"}"), 7);

  // Values are read at request time.
  registry.GetCounter("served_total", "Served.", {{"k", "v"}}).Increment();
  res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_THAT(res->body, HasSubstr("served_total{k=\"v\"} 8\n"));

  res = client.Get("/other");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(res->body, HasSubstr("/metrics"));

  (*server)->Stop();
  (*server)->Stop();  // idempotent
  httplib::Client after("127.0.0.1", (*server)->port());
  after.set_connection_timeout(1);
  EXPECT_FALSE(after.Get("/metrics"));
}

TEST(MetricsHttpServerTest, StopRightAfterStartReturns) {
  MetricsRegistry registry;
  for (int i = 0; i < 5; ++i) {
    auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry);
    ASSERT_TRUE(server.ok()) << server.status();
    (*server)->Stop();
  }
}

TEST(MetricsHttpServerTest, RejectsMalformedListenAddress) {
  MetricsRegistry registry;
  for (const char* listen : {"nonsense", "", ":9090", "host:", "host:abc", "host:70000", "host:-1",
                             "::1:9090", "[::1]9090", "host:90 90"}) {
    auto server = MetricsHttpServer::Start(listen, &registry);
    ASSERT_FALSE(server.ok()) << listen;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("HOST:PORT")) << listen;
  }
}

TEST(MetricsHttpServerTest, PortInUseIsUnavailable) {
  MetricsRegistry registry;
  auto first = MetricsHttpServer::Start("127.0.0.1:0", &registry);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string listen = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsHttpServer::Start(listen, &registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(listen));
}

}  // namespace
}  // namespace tessera
