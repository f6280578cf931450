// tessera-server: serves tessera.v1.Inference, grpc.health.v1 and server
// reflection for one model folder.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/version.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/api/inference_service.h"
#include "server/serving_stack.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "HF model folder (config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "address to serve on; port 0 picks a free port");
ABSL_FLAG(int, threads, 0, "CPU threads for the engine; 0 uses every core");
ABSL_FLAG(int, max_batch_size, 8, "most requests decoded together in one step");
ABSL_FLAG(int, max_queue, 1024, "most requests waiting for admission; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_new_tokens_limit, 0, "largest max_new_tokens a request may ask; 0: the context length");
ABSL_FLAG(int64_t, kv_cache_tokens, 0, "KV cache capacity in tokens; 0: max_batch_size full contexts");
ABSL_FLAG(int, kv_block_size, 16, "tokens per KV cache block");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "on SIGTERM/SIGINT, how long in-flight requests may run before they are cancelled");
ABSL_FLAG(std::string, port_file, "",
          "write the bound port to this file once serving (for tests and scripts)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");

namespace tessera {
namespace {

int Fail(const std::string& message) {
  spdlog::critical("{}", message);
  return 1;
}

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", ec.message()));
  return absl::OkStatus();
}

int Run() {
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  spdlog::info("tessera-server {}", kVersion);

  // SIGTERM/SIGINT are taken by sigwait below; block them before any thread
  // starts so no worker receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ServingOptions so;
  so.model_dir = absl::GetFlag(FLAGS_model);
  so.num_threads = absl::GetFlag(FLAGS_threads);
  so.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  so.max_queue = absl::GetFlag(FLAGS_max_queue);
  so.max_new_tokens_limit = absl::GetFlag(FLAGS_max_new_tokens_limit);
  so.kv_cache_tokens = absl::GetFlag(FLAGS_kv_cache_tokens);
  so.kv_block_size = absl::GetFlag(FLAGS_kv_block_size);
  absl::StatusOr<std::unique_ptr<ServingStack>> stack = BuildServingStack(so);
  if (!stack.ok()) return Fail(absl::StrCat("cannot start: ", stack.status().message()));

  InferenceService service((*stack)->scheduler.get(), (*stack)->tokenizer.get(), (*stack)->Info());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return Fail(absl::StrCat("cannot listen on '", listen, "' (address in use, or not host:port?)"));
  }
  // "" is the whole server; the named entry lets probes ask for the API.
  server->GetHealthCheckService()->SetServingStatus(true);
  server->GetHealthCheckService()->SetServingStatus(v1::Inference::service_full_name(), true);
  const std::string host = listen.substr(0, listen.rfind(':'));
  spdlog::info("serving {} on {}:{}", (*stack)->model->name, host, port);
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    if (absl::Status s = WritePortFile(absl::GetFlag(FLAGS_port_file), port); !s.ok()) {
      server->Shutdown();
      return Fail(std::string(s.message()));
    }
  }

  int sig = 0;
  sigwait(&signals, &sig);
  const absl::Duration grace = absl::GetFlag(FLAGS_shutdown_grace);
  spdlog::info("received {}; admitting no new requests, draining for up to {}",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", absl::FormatDuration(grace));
  server->GetHealthCheckService()->SetServingStatus(false);
  (*stack)->scheduler->StopAdmitting();
  // Waits for in-flight RPCs; past the deadline gRPC cancels them, which
  // cancels their requests in the scheduler.
  server->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  (*stack)->scheduler->Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  const std::vector<std::string> rest = tessera::ParseFlags(
      argc, argv,
      "Serves a Llama-family model over gRPC.\n"
      "  tessera-server --model DIR [--listen HOST:PORT] [--threads N] [--max-batch-size N]");
  if (rest.size() > 1) {
    std::fprintf(stderr, "tessera-server: unexpected argument '%s' (see --help)\n", rest[1].c_str());
    return 2;
  }
  return tessera::Run();
}
