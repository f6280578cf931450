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
#include "server/serving_flags.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "address to serve on; port 0 picks a free port");
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
  spdlog::info("tessera-server {}", Version());

  // SIGTERM/SIGINT are taken by sigwait below; block them before any thread
  // starts so no worker receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<ServingOptions> so = ServingOptionsFromFlags();
  if (!so.ok()) return Fail(absl::StrCat("cannot start: ", so.status().message()));
  absl::StatusOr<std::unique_ptr<ServingStack>> stack = BuildServingStack(*so);
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
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "Serves a Llama-family model over gRPC.\n"
      "  tessera-server --model DIR [--listen HOST:PORT] [--threads N] [--max-batch-size N]");
  return tessera::Run();
}
