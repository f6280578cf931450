// tessera-bench-cold-adapter: what a cold adapter costs a client, end to end
// through a running tessera-server. For each model shape (a random model of
// TinyLlama-1.1B or Llama-3-8B dims, int4, made by tessera-genmodel) and LoRA
// rank, three random adapters W, X, Y are uploaded to a server with two
// adapter slots; then, --trials times, a request with W (resident: the warm
// time to first token) and one with X or Y in turn (each evicts the other: a
// miss) are timed from the call to the first streamed token. Reported: the
// medians, the miss penalty (miss - warm), the upload-ack -> first-token time
// of the first request after each upload (also a miss), and the server's own
// load times from its log. Writes JSON.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "client/tessera_client.h"
#include "common/flags.h"
#include "model/model_config.h"
#include "tests/support/subprocess.h"

ABSL_FLAG(std::vector<std::string>, shapes, std::vector<std::string>({"1.1b", "8b"}), "model shapes: 1.1b, 8b");
ABSL_FLAG(std::vector<std::string>, ranks, std::vector<std::string>({"8", "16", "64"}), "LoRA ranks");
ABSL_FLAG(int, trials, 7, "warm and miss requests per rank (medians reported)");
ABSL_FLAG(std::string, work_dir, "/tmp/tessera-cold-adapter-bench", "models, adapters, store and logs");
ABSL_FLAG(std::string, out, "", "write the JSON report here");
ABSL_FLAG(double, lora_b_std, 0.01, "standard deviation of the random adapters' B (A: 0.01)");
ABSL_FLAG(bool, diagnose, false, "per trial, also time the missed adapter again (warm) and the base model");

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::BinaryPath;
using testing::Subprocess;

int Fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  return 1;
}

struct FirstToken {
  double client_ms = -1;  // from the call to the first streamed token
  double queue_ms = 0;    // the server's: admission to the first step (a load waits here)
  double server_ms = 0;   // the server's: admission to the first token
};

absl::StatusOr<FirstToken> TimeToFirstToken(TesseraClient& client, const std::string& adapter) {
  v1::GenerateRequest r;
  r.set_text("Once upon a time");
  r.set_adapter_id(adapter);
  r.mutable_sampling()->set_max_new_tokens(1);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stopping()->set_ignore_eos(true);
  const absl::Time start = absl::Now();
  FirstToken first;
  absl::Status s = client.GenerateStream(r, [&](const v1::GenerateStreamResponse& m) {
    if (first.client_ms < 0 && m.token_ids_size() > 0) first.client_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    if (m.has_timings()) {
      first.queue_ms = m.timings().queue_ms();
      first.server_ms = m.timings().time_to_first_token_ms();
    }
  });
  if (!s.ok()) return s;
  if (first.client_ms < 0) return absl::InternalError("the stream ended without a token");
  return first;
}

// The server's "adapter cache: loaded @ID (...) into slot N in X ms" times,
// in log order.
std::vector<double> ServerLoadTimes(const std::string& log_path) {
  std::ifstream in(log_path);
  std::vector<double> ms;
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find("adapter cache: loaded @");
    if (at == std::string::npos) continue;
    const size_t in_pos = line.rfind(" in ");
    double v;
    if (in_pos != std::string::npos &&
        absl::SimpleAtod(absl::StripSuffix(line.substr(in_pos + 4), " ms"), &v)) {
      ms.push_back(v);
    }
  }
  return ms;
}

int Run() {
  const std::string work = absl::GetFlag(FLAGS_work_dir);
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const std::string& shape : absl::GetFlag(FLAGS_shapes)) {
    if (shape != "1.1b" && shape != "8b") return Fail(absl::StrCat("unknown shape ", shape, " (1.1b, 8b)"));
    // The linear shapes are the preset's; a small vocabulary keeps the
    // embedding and LM head (which no adapter touches) cheap.
    const std::string model = absl::StrCat(work, "/model-", shape);
    if (!fs::exists(model + "/config.json")) {
      std::printf("generating the %s model in %s ...\n", shape.c_str(), model.c_str());
      std::fflush(stdout);
      testing::CommandResult g = testing::RunCommand(
          {BinaryPath("bench/tessera-genmodel"), "--preset", shape, "--vocab", "32000", "--dtype", "bf16",
           "--output", model},
          absl::Minutes(30));
      if (g.exit_code != 0) return Fail(g.output);
    }
    absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(model + "/config.json");
    if (!config.ok()) return Fail(std::string(config.status().message()));
    const std::string run = absl::StrCat(work, "/run-", shape);
    fs::remove_all(run);
    fs::create_directories(run);
    const std::string log = run + "/server.log";
    std::unique_ptr<Subprocess> server = Subprocess::Start(
        {BinaryPath("server/tessera-server"), "--model", model, "--listen", "127.0.0.1:0", "--port-file",
         run + "/port", "--quantize", "int4", "--data-dir", run + "/store", "--adapter-slots", "2",
         "--max-lora-rank", "64", "--max-upload-mb", "4096", "--max-adapter-mb", "4096", "--insecure-no-auth"},
        log);
    if (!server) return Fail("cannot start tessera-server");
    int port = 0;
    const absl::Time start_deadline = absl::Now() + absl::Minutes(20);
    while (absl::Now() < start_deadline && server->Running()) {
      std::ifstream in(run + "/port");
      if (in >> port && port > 0) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (port <= 0) return Fail(absl::StrCat("tessera-server did not start; see ", log));
    absl::StatusOr<std::unique_ptr<TesseraClient>> client = TesseraClient::Connect(absl::StrCat("127.0.0.1:", port));
    if (!client.ok()) return Fail(std::string(client.status().message()));
    for (const std::string& rank_text : absl::GetFlag(FLAGS_ranks)) {
      int r = 0;
      if (!absl::SimpleAtoi(rank_text, &r) || r < 1 || r > 64) return Fail("--ranks: 1 to 64");
      const size_t loads_before = ServerLoadTimes(log).size();
      std::vector<double> upload_ms;
      std::map<std::string, int64_t> file_bytes;
      for (const char* name : {"w", "x", "y"}) {
        const std::string dir = absl::StrCat(run, "/adapters/", name, r);
        // (Before the engine flushed denormals, a random B of this size
        // drove some adapters' activations into denormals on the random 8B
        // model and made their steps up to 35% slower: kernels/cpu/float_env.h.)
        if (absl::Status s = WriteRandomLora(dir, *config, r, DType::kF32, name[0], 0.01f,
                                                  static_cast<float>(absl::GetFlag(FLAGS_lora_b_std))); !s.ok()) {
          return Fail(std::string(s.message()));
        }
        file_bytes[name] = static_cast<int64_t>(fs::file_size(dir + "/adapter_model.safetensors"));
        v1::UploadMetadata meta;
        meta.set_name(absl::StrCat(name, r));
        absl::StatusOr<v1::AdapterInfo> info = (*client)->UploadAdapter(dir, meta);
        if (!info.ok()) return Fail(std::string(info.status().message()));
        absl::StatusOr<FirstToken> ttft = TimeToFirstToken(**client, absl::StrCat(name, r));
        if (!ttft.ok()) return Fail(std::string(ttft.status().message()));
        upload_ms.push_back(ttft->client_ms);
      }
      // W again, so that it is the most recently used: X and Y then evict
      // each other, never W.
      if (absl::StatusOr<FirstToken> w = TimeToFirstToken(**client, absl::StrCat("w", r)); !w.ok()) {
        return Fail(std::string(w.status().message()));
      }
      std::vector<double> warm, miss, warm_queue, miss_queue, warm_server, miss_server;
      for (int t = 0; t < absl::GetFlag(FLAGS_trials); ++t) {
        absl::StatusOr<FirstToken> w = TimeToFirstToken(**client, absl::StrCat("w", r));
        absl::StatusOr<FirstToken> m = TimeToFirstToken(**client, absl::StrCat(t % 2 ? "y" : "x", r));
        if (!w.ok() || !m.ok()) return Fail(std::string((w.ok() ? m.status() : w.status()).message()));
        warm.push_back(w->client_ms);
        miss.push_back(m->client_ms);
        if (absl::GetFlag(FLAGS_diagnose)) {
          absl::StatusOr<FirstToken> again = TimeToFirstToken(**client, absl::StrCat(t % 2 ? "y" : "x", r));
          absl::StatusOr<FirstToken> base = TimeToFirstToken(**client, "");
          std::printf("  trial %d: warm %.1f  miss %.1f (queue %.1f)  same again %.1f  base %.1f\n", t,
                      w->client_ms, m->client_ms, m->queue_ms, again.ok() ? again->client_ms : -1,
                      base.ok() ? base->client_ms : -1);
        }
        warm_queue.push_back(w->queue_ms);
        miss_queue.push_back(m->queue_ms);
        warm_server.push_back(w->server_ms);
        miss_server.push_back(m->server_ms);
      }
      // This rank's loads: one per upload, W again, then one per miss.
      std::vector<double> loads = ServerLoadTimes(log);
      loads.erase(loads.begin(), loads.begin() + static_cast<std::ptrdiff_t>(loads_before));
      const int expected_loads = 4 + absl::GetFlag(FLAGS_trials);
      if (static_cast<int>(loads.size()) != expected_loads) {
        return Fail(absl::StrCat("expected ", expected_loads, " loads in the server log, found ", loads.size(),
                                 " (was W evicted?)"));
      }
      const std::vector<double> upload_loads(loads.begin(), loads.begin() + 3);
      loads.erase(loads.begin(), loads.begin() + 4);
      for (const char* name : {"w", "x", "y"}) (void)(*client)->DeleteAdapter(absl::StrCat(name, r));
      const double load_ms = loads.empty() ? 0 : Median(loads);
      const double penalty = Median(miss) - Median(warm);
      results.push_back({{"shape", shape},
                         {"rank", r},
                         {"file_mib", file_bytes["x"] / 1048576.0},
                         {"trials", absl::GetFlag(FLAGS_trials)},
                         {"warm_ttft_ms_median", Median(warm)},
                         {"miss_ttft_ms_median", Median(miss)},
                         {"miss_penalty_ms", penalty},
                         {"warm_server_queue_ms_median", Median(warm_queue)},
                         {"miss_server_queue_ms_median", Median(miss_queue)},
                         {"warm_server_ttft_ms_median", Median(warm_server)},
                         {"miss_server_ttft_ms_median", Median(miss_server)},
                         {"upload_ack_to_first_token_ms_median", Median(upload_ms)},
                         {"upload_penalty_ms", Median(upload_ms) - Median(warm)},
                         {"server_load_ms_median", load_ms},
                         {"server_load_after_upload_ms_median", Median(upload_loads)},
                         {"penalty_minus_load_ms", penalty - load_ms}});
      std::printf(
          "%-5s rank %-3d %7.1f MiB  warm %8.1f ms  miss %8.1f ms  penalty %7.1f ms (server load %6.1f ms, "
          "queue %5.1f/%5.1f ms, server ttft %7.1f/%7.1f ms)  upload->token penalty %7.1f ms\n",
          shape.c_str(), r, file_bytes["x"] / 1048576.0, Median(warm), Median(miss), penalty, load_ms,
          Median(warm_queue), Median(miss_queue), Median(warm_server), Median(miss_server),
          Median(upload_ms) - Median(warm));
      std::fflush(stdout);
    }
    server->Signal(SIGTERM);
    server->Wait(absl::Seconds(60));
  }
  nlohmann::ordered_json report = {{"benchmark", "cold_adapter_through_server"},
                                   {"prompt", "Once upon a time"},
                                   {"quantize", "int4"},
                                   {"vocab", 32000},
                                   {"results", results}};
  return EmitJsonReport(report, absl::GetFlag(FLAGS_out));
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "Times cold adapters through a running server: upload-ack -> first token and evict -> request -> first "
      "token, against a warm request.\n"
      "  tessera-bench-cold-adapter [--shapes 1.1b,8b] [--ranks 8,16,64] [--trials 7]");
  return tessera::Run();
}
