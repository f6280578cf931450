// tessera-soak: a bounded load test against a running tessera-server on
// loopback (scripts/soak starts one). N concurrent streaming requests for the
// given time, each with a random adapter (or none) and one of three endings:
// run to completion, cancelled by the client after a few tokens, or cut by a
// short deadline. Fails (exit 1) on any status code other than the one the
// request's ending allows, on server RSS growth of 5% or more between minute 2
// and the end, when tessera_kv_blocks_used does not return to 0, or when no
// request ran. Prints a JSON summary.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/tessera_client.h"
#include "common/flags.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tessera/v1/inference.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "tessera-server address");
ABSL_FLAG(int, metrics_port, 0, "the server's --metrics-listen port (for tessera_kv_blocks_used)");
ABSL_FLAG(int, server_pid, 0, "the server's pid (for its RSS)");
ABSL_FLAG(int, streams, 500, "concurrent streaming requests");
ABSL_FLAG(double, minutes, 10, "how long to run");
ABSL_FLAG(double, rss_baseline_minutes, 2, "when to take the RSS baseline");
ABSL_FLAG(std::vector<std::string>, adapters, {}, "adapter names to pick from (and the base model)");
ABSL_FLAG(std::string, report, "", "also write the JSON summary to this file");

namespace tessera {
namespace {

int64_t RssKb(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits.push_back(c);
      }
      if (absl::SimpleAtoi(digits, &kb)) return kb;
    }
  }
  return -1;
}

double KvBlocksUsed(int port) {
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return -1;
  const std::string key = "tessera_kv_blocks_used ";
  const size_t at = res->body.find("\n" + key);
  if (at == std::string::npos) return -1;
  double v = -1;
  const size_t end = res->body.find('\n', at + 1);
  if (!absl::SimpleAtod(res->body.substr(at + 1 + key.size(), end - at - 1 - key.size()), &v)) return -1;
  return v;
}

int Run() {
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials());
  auto stub = v1::Inference::NewStub(channel);
  std::vector<std::string> adapters = absl::GetFlag(FLAGS_adapters);
  adapters.push_back("");  // the base model
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(60 * absl::GetFlag(FLAGS_minutes));
  const absl::Time baseline_at = start + absl::Seconds(60 * absl::GetFlag(FLAGS_rss_baseline_minutes));
  std::mutex mu;
  std::map<std::string, int64_t> outcomes;  // "ending/CODE" -> count
  std::atomic<int64_t> requests{0}, tokens{0}, unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < absl::GetFlag(FLAGS_streams); ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      while (absl::Now() < end) {
        v1::GenerateRequest r;
        const int prompt = std::uniform_int_distribution<int>(4, 40)(rng);
        for (int i = 0; i < prompt; ++i) r.mutable_token_ids()->add_ids(std::uniform_int_distribution<int>(4, 500)(rng));
        r.mutable_sampling()->set_max_new_tokens(std::uniform_int_distribution<int>(4, 48)(rng));
        r.mutable_stopping()->set_ignore_eos(true);
        r.set_adapter_id(adapters[std::uniform_int_distribution<size_t>(0, adapters.size() - 1)(rng)]);
        const int ending = std::uniform_int_distribution<int>(0, 9)(rng);  // 0-5 full, 6-7 cancel, 8-9 deadline
        grpc::ClientContext ctx;
        const char* kind = ending < 6 ? "complete" : ending < 8 ? "cancel" : "deadline";
        ctx.set_deadline(std::chrono::system_clock::now() +
                         (ending >= 8 ? std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 400)(rng))
                                      : std::chrono::milliseconds(120000)));
        auto reader = stub->GenerateStream(&ctx, r);
        v1::GenerateStreamResponse m;
        int messages = 0;
        const int cancel_after = std::uniform_int_distribution<int>(1, 3)(rng);
        while (reader->Read(&m)) {
          tokens.fetch_add(m.token_ids_size());
          if (ending >= 6 && ending < 8 && ++messages >= cancel_after) ctx.TryCancel();
        }
        const grpc::Status s = reader->Finish();
        requests.fetch_add(1);
        bool ok = s.ok();
        if (ending >= 6 && ending < 8) ok = ok || s.error_code() == grpc::StatusCode::CANCELLED;
        if (ending >= 8) ok = ok || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
        const std::string key = absl::StrCat(kind, "/", s.ok() ? "OK" : absl::StatusCodeToString(
                                                                        static_cast<absl::StatusCode>(s.error_code())));
        std::lock_guard<std::mutex> lock(mu);
        ++outcomes[key];
        if (!ok) {
          if (unexpected.fetch_add(1) < 10) std::fprintf(stderr, "unexpected %s: %s\n", key.c_str(), s.error_message().c_str());
        }
      }
    });
  }
  const int pid = absl::GetFlag(FLAGS_server_pid);
  int64_t rss_baseline = -1, rss_peak = 0;
  while (absl::Now() < end) {
    absl::SleepFor(absl::Seconds(1));
    const int64_t rss = pid > 0 ? RssKb(pid) : -1;
    rss_peak = std::max(rss_peak, rss);
    if (rss_baseline < 0 && absl::Now() >= baseline_at) rss_baseline = rss;
  }
  for (auto& t : threads) t.join();
  const int64_t rss_end = pid > 0 ? RssKb(pid) : -1;
  double kv = -1;
  for (int i = 0; i < 100 && kv != 0; ++i) {
    kv = absl::GetFlag(FLAGS_metrics_port) > 0 ? KvBlocksUsed(absl::GetFlag(FLAGS_metrics_port)) : 0;
    if (kv != 0) absl::SleepFor(absl::Milliseconds(100));
  }
  const double growth = rss_baseline > 0 ? static_cast<double>(rss_end - rss_baseline) / rss_baseline : 0;
  nlohmann::json report = {{"streams", absl::GetFlag(FLAGS_streams)},
                           {"seconds", absl::ToDoubleSeconds(absl::Now() - start)},
                           {"requests", requests.load()},
                           {"tokens", tokens.load()},
                           {"unexpected_status", unexpected.load()},
                           {"outcomes", outcomes},
                           {"rss_kb_at_baseline", rss_baseline},
                           {"rss_kb_at_end", rss_end},
                           {"rss_kb_peak", rss_peak},
                           {"rss_growth", growth},
                           {"kv_blocks_used_at_end", kv}};
  const std::string text = report.dump(2);
  std::printf("%s\n", text.c_str());
  if (!absl::GetFlag(FLAGS_report).empty()) std::ofstream(absl::GetFlag(FLAGS_report)) << text << "\n";
  bool pass = requests.load() > 0 && unexpected.load() == 0 && kv == 0 && growth < 0.05;
  if (pid > 0 && rss_baseline < 0) pass = false;  // never measured
  std::printf("soak: %s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(argc, argv, "Soak test against a running tessera-server (scripts/soak).");
  return tessera::Run();
}
