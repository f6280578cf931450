#include "server/api/server_metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/prometheus.h"

namespace tessera {
namespace {

using ::tessera::testing::ParsePrometheusText;
using ::tessera::testing::SumSeries;
using ::testing::HasSubstr;
using ::testing::Not;

std::map<std::string, double> Parse(ServerMetrics& m) {
  auto parsed = ParsePrometheusText(m.Render());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : std::map<std::string, double>{};
}

// One request's events, as the scheduler reports them.
void RunRequest(Scheduler::Observer& o, const std::string& tenant, const std::string& adapter, const char* kind,
                int tokens, FinishReason reason) {
  o.on_submit({tenant, adapter, adapter.empty() ? "base" : ""});
  o.on_admit({tenant, adapter, kind}, 2.0);
  o.on_first_token({tenant, adapter, kind}, 30.0);
  for (int i = 1; i < tokens; ++i) o.on_token({tenant, adapter, kind}, 5.0);
  GenerationResult r;
  r.prompt_tokens = 7;
  r.completion_tokens = tokens;
  r.finish_reason = reason;
  r.total_ms = 250;
  o.on_finish({tenant, adapter, kind}, r, /*admitted=*/true);
}

TEST(ServerMetricsTest, CountersAndHistogramsMoveByTheEvents) {
  ServerMetrics metrics;
  Scheduler::Observer o = metrics.SchedulerObserver();
  RunRequest(o, "acme", "", "base", 4, FinishReason::kLength);
  RunRequest(o, "acme", "acme/de", "lora", 3, FinishReason::kEos);
  RunRequest(o, "zeta", "acme/de", "lora", 2, FinishReason::kStop);
  const auto m = Parse(metrics);
  EXPECT_EQ(SumSeries(m, "tessera_prompt_tokens_total", {{"tenant", "acme"}}), 14);
  EXPECT_EQ(SumSeries(m, "tessera_generation_tokens_total", {{"tenant", "acme"}}), 7);
  EXPECT_EQ(SumSeries(m, "tessera_generation_tokens_total", {{"tenant", "zeta"}}), 2);
  EXPECT_EQ(SumSeries(m, "tessera_generation_requests_total", {{"finish_reason", "stop"}}), 2);  // EOS is "stop"
  EXPECT_EQ(SumSeries(m, "tessera_generation_requests_total", {{"adapter_kind", "base"}, {"finish_reason", "length"}}),
            1);
  EXPECT_EQ(SumSeries(m, "tessera_time_to_first_token_seconds_count", {{"adapter_kind", "lora"}}), 2);
  EXPECT_EQ(SumSeries(m, "tessera_time_to_first_token_seconds_sum", {{"tenant", "acme"}}), 0.06);
  EXPECT_EQ(SumSeries(m, "tessera_inter_token_latency_seconds_count", {}), 3 + 2 + 1);
  // 5 ms lands in the 5 ms bucket and above, not in the 2.5 ms one.
  EXPECT_EQ(SumSeries(m, "tessera_inter_token_latency_seconds_bucket", {{"le", "0.005"}}), 6);
  EXPECT_EQ(SumSeries(m, "tessera_inter_token_latency_seconds_bucket", {{"le", "0.0025"}}), 0);
  EXPECT_EQ(SumSeries(m, "tessera_request_duration_seconds_count", {}), 3);
  EXPECT_EQ(SumSeries(m, "tessera_request_queue_seconds_count", {{"tenant", "acme"}}), 2);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_requests_total", {{"adapter", "acme/de"}}), 2);
  EXPECT_EQ(SumSeries(m, "tessera_build_info", {{"backend", "cpu"}}), 1);
}

TEST(ServerMetricsTest, ExpositionPassesPromtool) {
  ServerMetrics metrics;
  Scheduler::Observer o = metrics.SchedulerObserver();
  RunRequest(o, "acme", "acme/de", "lora", 3, FinishReason::kLength);
  AdapterCache::Observer c = metrics.CacheObserver();
  c.on_load(12.5, true);
  c.on_want(false);
  c.on_want(true);
  metrics.CountHttpRequest("/v1/completions", 200);
  metrics.WatermarkMatchHook()("reject");
  const std::string text = metrics.Render();
  EXPECT_TRUE(testing::PromtoolCheck(text).ok()) << testing::PromtoolCheck(text) << "\n" << text;
  EXPECT_THAT(text, Not(HasSubstr("_ms")));
  const auto m = Parse(metrics);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_cache_hits_total"), 1);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_cache_misses_total"), 1);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_loads_total", {{"result", "ok"}}), 1);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_load_seconds_sum"), 0.0125);
  EXPECT_EQ(SumSeries(m, "tessera_http_requests_total", {{"route", "/v1/completions"}, {"code", "200"}}), 1);
  EXPECT_EQ(SumSeries(m, "tessera_watermark_matches_total", {{"action", "reject"}}), 1);
  EXPECT_EQ(SumSeries(m, "tessera_watermark_matches_total", {{"action", "flag"}}), 0);
}

TEST(ServerMetricsTest, PromtoolCatchesABadName) {
  // The check itself can fail: a counter without _total is reported.
  const std::string bad = "# HELP x_ms A latency.\n# TYPE x_ms counter\nx_ms 1\n";
  EXPECT_FALSE(testing::PromtoolCheck(bad).ok());
}

TEST(ServerMetricsTest, AdapterSeriesAreBounded) {
  ServerMetricsOptions options;
  options.max_adapter_series = 2;
  ServerMetrics metrics(options);
  Scheduler::Observer o = metrics.SchedulerObserver();
  for (const char* a : {"t/a", "t/b", "t/c", "t/d", "t/a"}) RunRequest(o, "t", a, "lora", 1, FinishReason::kLength);
  const auto m = Parse(metrics);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_requests_total", {{"adapter", "t/a"}}), 2);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_requests_total", {{"adapter", "t/b"}}), 1);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_requests_total", {{"adapter", "other"}}), 2);
  EXPECT_EQ(SumSeries(m, "tessera_adapter_requests_total", {{"adapter", "t/c"}}), 0);
}

TEST(ServerMetricsTest, RefusedAndQueuedFailuresCountNoPromptTokens) {
  ServerMetrics metrics;
  Scheduler::Observer o = metrics.SchedulerObserver();
  o.on_submit({"acme", "acme/x", ""});
  GenerationResult r;
  r.status = absl::DeadlineExceededError("queued past its deadline");
  r.prompt_tokens = 9;
  o.on_finish({"acme", "acme/x", ""}, r, /*admitted=*/false);
  const auto m = Parse(metrics);
  EXPECT_EQ(SumSeries(m, "tessera_generation_requests_total", {{"finish_reason", "error"}, {"adapter_kind", "unknown"}}),
            1);
  EXPECT_EQ(SumSeries(m, "tessera_prompt_tokens_total"), 0);
  EXPECT_EQ(SumSeries(m, "tessera_request_duration_seconds_count"), 0);
}

}  // namespace
}  // namespace tessera
