// tessera-server: serves tessera.v1.Inference, tessera.v1.Adapters,
// tessera.v1.Ownership, grpc.health.v1 and server reflection for one model
// folder; the OpenAI-compatible HTTP API (--http-listen) and Prometheus
// metrics over HTTP (--metrics-listen).
#include <httplib.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/version.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/api/adapter_catalog.h"
#include "server/api/adapter_service.h"
#include "server/api/inference_service.h"
#include "server/api/ownership_service.h"
#include "server/api/server_metrics.h"
#include "server/api/tenants.h"
#include "server/http/http_server.h"
#include "server/http/openai_service.h"
#include "server/serving/serving_flags.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "address to serve on; port 0 picks a free port");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "on SIGTERM/SIGINT, how long in-flight requests may run before they are cancelled");
ABSL_FLAG(std::string, port_file, "",
          "write the bound port to this file once serving (for tests and scripts)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, data_dir, "", "durable adapter store; empty: no uploads, start-up adapters only");
ABSL_FLAG(double, adapter_cache_mb, 1024, "memory for resident uploaded adapters, in MiB (LRU beyond it)");
ABSL_FLAG(double, max_upload_mb, 1024, "largest adapter upload (both files), in MiB");
ABSL_FLAG(int, adapter_load_threads, 0,
          "threads copying an adapter into its pool slot on a cache miss; 0: up to 4, at most the cores");
ABSL_FLAG(double, adapter_scrub_mb_per_s, 32,
          "background re-check of stored adapters' sha256, in MiB read per second; 0: off (sizes are still "
          "checked on every load)");
ABSL_FLAG(absl::Duration, adapter_scrub_interval, absl::Hours(1),
          "pause between two passes of the adapter scrub over the whole store");
ABSL_FLAG(std::string, tenants, "", "tenants and API key hashes, JSON (see README)");
ABSL_FLAG(bool, insecure_no_auth, false, "accept every call as the admin tenant 'local' (local demos only)");
ABSL_FLAG(std::string, on_watermark_match, "reject",
          "an upload carrying another tenant's registered SEAL watermark: reject (PERMISSION_DENIED) or flag "
          "(stored, marked); both are audit-logged");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT for Prometheus /metrics over HTTP, e.g. 0.0.0.0:9464; empty: off; port 0 picks a free port");
ABSL_FLAG(std::string, metrics_port_file, "", "write the bound metrics port to this file");
ABSL_FLAG(int32_t, metrics_max_adapter_series, 64,
          "adapters with their own series in per-adapter metrics; later ones count as 'other'");
ABSL_FLAG(std::string, http_listen, "",
          "HOST:PORT for the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, "
          "/health, /ready), e.g. 0.0.0.0:8000; empty: off; port 0 picks a free port");
ABSL_FLAG(std::string, http_port_file, "", "write the bound HTTP API port to this file");
ABSL_FLAG(int32_t, http_threads, 64,
          "HTTP API connections served at once (a streaming response holds one until it ends)");
ABSL_FLAG(int64_t, max_prompt_bytes, 1 << 20, "largest prompt text accepted, in bytes");
ABSL_FLAG(int32_t, max_stop_strings, 16, "most stop strings in one request");
ABSL_FLAG(int32_t, max_stop_string_bytes, 256, "longest stop string, in bytes");
ABSL_FLAG(int32_t, max_requests_per_tenant, 1024, "most Generate calls in flight for one tenant");
ABSL_FLAG(int32_t, max_requests_total, 4096, "most Generate calls in flight in all");
ABSL_FLAG(int32_t, max_uploads_per_tenant, 4, "most adapter uploads in flight for one tenant");
ABSL_FLAG(int32_t, max_uploads_total, 64, "most adapter uploads in flight in all");
ABSL_FLAG(absl::Duration, upload_idle_timeout, absl::Seconds(30),
          "an upload that sends nothing for this long is cancelled and its files removed");
ABSL_FLAG(int32_t, max_message_mb, 8, "largest gRPC message accepted, in MiB (uploads send ~1 MiB chunks)");
ABSL_FLAG(int32_t, max_metadata_kb, 16, "largest gRPC metadata (headers) accepted, in KiB");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve gRPC over TLS (with --tls-key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require every client to present a certificate it issued (mTLS)");
ABSL_FLAG(absl::Duration, testing_step_delay, absl::ZeroDuration(),
          "for tests only: pause after every engine step, to make queue waits observable");

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

// Every connection and upload holds a descriptor: use the hard limit, not
// the (often 1024) soft one.
void RaiseFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  }
  spdlog::info("file descriptor limit {}", static_cast<uint64_t>(rl.rlim_cur));
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* flag) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat(flag, " ", text.status().message()));
  if (text->find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a PEM file"));
  }
  return text;
}

// Plaintext unless --tls-cert/--tls-key; mTLS with --tls-client-ca.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromFlags() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key),
                    client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() && key.empty()) {
    if (!client_ca.empty()) return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    return grpc::InsecureServerCredentials();
  }
  if (cert.empty() || key.empty()) return absl::InvalidArgumentError("pass both --tls-cert and --tls-key");
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  absl::StatusOr<std::string> text = ReadPemFile(cert, "--tls-cert");
  if (!text.ok()) return text.status();
  pair.cert_chain = *text;
  text = ReadPemFile(key, "--tls-key");
  if (!text.ok()) return text.status();
  pair.private_key = *text;
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!client_ca.empty()) {
    text = ReadPemFile(client_ca, "--tls-client-ca");
    if (!text.ok()) return text.status();
    options.pem_root_certs = *text;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  spdlog::info("gRPC over TLS{}", client_ca.empty() ? "" : " with client certificates required (mTLS)");
  return grpc::SslServerCredentials(options);
}

int Run() {
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  spdlog::info("tessera-server {}", Version());
  RaiseFileLimit();
  for (const auto& [value, name] : {std::pair<int64_t, const char*>{absl::GetFlag(FLAGS_max_prompt_bytes),
                                                                     "--max-prompt-bytes"},
                                    {absl::GetFlag(FLAGS_max_stop_strings), "--max-stop-strings"},
                                    {absl::GetFlag(FLAGS_max_stop_string_bytes), "--max-stop-string-bytes"},
                                    {absl::GetFlag(FLAGS_max_requests_per_tenant), "--max-requests-per-tenant"},
                                    {absl::GetFlag(FLAGS_max_requests_total), "--max-requests-total"},
                                    {absl::GetFlag(FLAGS_max_uploads_per_tenant), "--max-uploads-per-tenant"},
                                    {absl::GetFlag(FLAGS_max_uploads_total), "--max-uploads-total"},
                                    {absl::GetFlag(FLAGS_max_message_mb), "--max-message-mb"},
                                    {absl::GetFlag(FLAGS_max_metadata_kb), "--max-metadata-kb"},
                                    {absl::GetFlag(FLAGS_http_threads), "--http-threads"},
                                    {absl::GetFlag(FLAGS_metrics_max_adapter_series),
                                     "--metrics-max-adapter-series"}}) {
    if (value < 1) return Fail(absl::StrCat("cannot start: ", name, " must be positive"));
  }
  if (absl::GetFlag(FLAGS_upload_idle_timeout) <= absl::ZeroDuration()) {
    return Fail("cannot start: --upload-idle-timeout must be positive");
  }

  // SIGTERM/SIGINT are taken by sigwait below; block them before any thread
  // starts so no worker receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<TenantDirectory> tenants;
  if (absl::GetFlag(FLAGS_insecure_no_auth)) {
    if (!absl::GetFlag(FLAGS_tenants).empty())
      return Fail("pass either --tenants or --insecure-no-auth, not both");
    spdlog::warn("--insecure-no-auth: every caller is the admin tenant 'local'; use it for local demos only");
    tenants = TenantDirectory::Insecure();
  } else if (absl::GetFlag(FLAGS_tenants).empty()) {
    return Fail(
        "cannot start: no --tenants FILE (API keys, see README); for a local demo pass --insecure-no-auth");
  } else {
    absl::StatusOr<std::unique_ptr<TenantDirectory>> t =
        TenantDirectory::FromFile(absl::GetFlag(FLAGS_tenants));
    if (!t.ok()) return Fail(absl::StrCat("cannot start: ", t.status().message()));
    tenants = *std::move(t);
    spdlog::info("{} tenant(s) from {}", tenants->size(), absl::GetFlag(FLAGS_tenants));
  }
  const auto mib = [](double mb) { return static_cast<int64_t>(mb * (1 << 20)); };
  if (mib(absl::GetFlag(FLAGS_adapter_cache_mb)) < 1 || mib(absl::GetFlag(FLAGS_max_upload_mb)) < 1) {
    return Fail("cannot start: --adapter-cache-mb and --max-upload-mb must be positive");
  }

  ServerMetricsOptions metrics_options;
  metrics_options.max_adapter_series = absl::GetFlag(FLAGS_metrics_max_adapter_series);
  ServerMetrics metrics(metrics_options);
  absl::StatusOr<ServingOptions> so = ServingOptionsFromFlags();
  if (!so.ok()) return Fail(absl::StrCat("cannot start: ", so.status().message()));
  so->data_dir = absl::GetFlag(FLAGS_data_dir);
  so->testing_step_delay = absl::GetFlag(FLAGS_testing_step_delay);
  so->adapter_cache_bytes = mib(absl::GetFlag(FLAGS_adapter_cache_mb));
  if (absl::GetFlag(FLAGS_adapter_load_threads) < 0 || !(absl::GetFlag(FLAGS_adapter_scrub_mb_per_s) >= 0) ||
      absl::GetFlag(FLAGS_adapter_scrub_interval) < absl::ZeroDuration()) {
    return Fail(
        "cannot start: --adapter-load-threads, --adapter-scrub-mb-per-s and --adapter-scrub-interval must not be "
        "negative");
  }
  so->adapter_load_threads = absl::GetFlag(FLAGS_adapter_load_threads);
  so->adapter_scrub_bytes_per_second = mib(absl::GetFlag(FLAGS_adapter_scrub_mb_per_s));
  so->adapter_scrub_interval = absl::GetFlag(FLAGS_adapter_scrub_interval);
  so->scheduler_observer = metrics.SchedulerObserver();
  so->adapter_cache_observer = metrics.CacheObserver();
  absl::StatusOr<std::unique_ptr<ServingStack>> stack = BuildServingStack(*so);
  if (!stack.ok()) return Fail(absl::StrCat("cannot start: ", stack.status().message()));
  metrics.AttachStack(stack->get());
  std::unique_ptr<HttpServer> metrics_http;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    absl::StatusOr<std::unique_ptr<HttpServer>> m =
        HttpServer::Start(listen, "--metrics-listen", 2, [&metrics](httplib::Server& server) {
          server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8");
          });
          server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            if (res.status == 404) res.set_content("not found: metrics are served at /metrics\n", "text/plain");
          });
        });
    if (!m.ok()) return Fail(absl::StrCat("cannot start metrics: ", m.status().message()));
    metrics_http = *std::move(m);
    spdlog::info("metrics on {}/metrics", metrics_http->url());
    if (!absl::GetFlag(FLAGS_metrics_port_file).empty()) {
      if (absl::Status s = WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), metrics_http->port());
          !s.ok()) {
        return Fail(std::string(s.message()));
      }
    }
  }

  WatermarkMatchAction on_match = WatermarkMatchAction::kReject;
  if (absl::GetFlag(FLAGS_on_watermark_match) == "flag") {
    on_match = WatermarkMatchAction::kFlag;
  } else if (absl::GetFlag(FLAGS_on_watermark_match) != "reject") {
    return Fail(absl::StrCat("cannot start: unknown --on-watermark-match value '",
                             absl::GetFlag(FLAGS_on_watermark_match), "' (use reject or flag)"));
  }
  AdapterCatalog catalog(stack->get(), mib(absl::GetFlag(FLAGS_max_upload_mb)), on_match);
  catalog.SetWatermarkMatchHook(metrics.WatermarkMatchHook());
  OwnershipService ownership_service(tenants.get(), &catalog, (*stack)->vault.get());
  InferenceLimits inference_limits;
  inference_limits.request.max_prompt_bytes = absl::GetFlag(FLAGS_max_prompt_bytes);
  inference_limits.request.context_length = (*stack)->context_length;
  inference_limits.request.max_stop_strings = absl::GetFlag(FLAGS_max_stop_strings);
  inference_limits.request.max_stop_string_bytes = absl::GetFlag(FLAGS_max_stop_string_bytes);
  inference_limits.request.defaults = (*stack)->generation_defaults;
  inference_limits.max_requests_per_tenant = absl::GetFlag(FLAGS_max_requests_per_tenant);
  inference_limits.max_requests_total = absl::GetFlag(FLAGS_max_requests_total);
  InferenceService service((*stack)->scheduler.get(), (*stack)->tokenizer.get(), tenants.get(), &catalog,
                           (*stack)->Info(), inference_limits,
                           (*stack)->chat_template ? &*(*stack)->chat_template : nullptr);
  OpenAiService openai(service.env(), (*stack)->model->name, (*stack)->scheduler->options().max_new_tokens_limit,
                       &metrics);
  std::unique_ptr<HttpServer> http;
  if (const std::string listen = absl::GetFlag(FLAGS_http_listen); !listen.empty()) {
    absl::StatusOr<std::unique_ptr<HttpServer>> h =
        HttpServer::Start(listen, "--http-listen", absl::GetFlag(FLAGS_http_threads),
                          [&openai](httplib::Server& server) { openai.Install(server); });
    if (!h.ok()) return Fail(absl::StrCat("cannot start the HTTP API: ", h.status().message()));
    http = *std::move(h);
    spdlog::info("OpenAI-compatible HTTP API on {}/v1", http->url());
    if (!absl::GetFlag(FLAGS_http_port_file).empty()) {
      if (absl::Status s = WritePortFile(absl::GetFlag(FLAGS_http_port_file), http->port()); !s.ok()) {
        return Fail(std::string(s.message()));
      }
    }
  }
  UploadLimits upload_limits;
  upload_limits.max_per_tenant = absl::GetFlag(FLAGS_max_uploads_per_tenant);
  upload_limits.max_total = absl::GetFlag(FLAGS_max_uploads_total);
  upload_limits.idle_timeout = absl::GetFlag(FLAGS_upload_idle_timeout);
  AdapterService adapter_service(tenants.get(), &catalog, upload_limits);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  // No SO_REUSEPORT: with it, two servers asking for port 0 (or a fixed
  // port) can end up sharing one and splitting each other's connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ServerCredentialsFromFlags();
  if (!credentials.ok()) return Fail(absl::StrCat("cannot start: ", credentials.status().message()));
  builder.AddListeningPort(listen, *credentials, &port);
  builder.RegisterService(&service);
  builder.RegisterService(&adapter_service);
  builder.RegisterService(&ownership_service);
  // Uploads arrive in chunks of about 1 MiB; leave room for the framing.
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, absl::GetFlag(FLAGS_max_metadata_kb) << 10);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(metrics.InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return Fail(absl::StrCat("cannot listen on '", listen, "' (address in use, or not host:port?)"));
  }
  // "" is the whole server; the named entry lets probes ask for the API.
  server->GetHealthCheckService()->SetServingStatus(true);
  server->GetHealthCheckService()->SetServingStatus(v1::Inference::service_full_name(), true);
  server->GetHealthCheckService()->SetServingStatus(v1::Adapters::service_full_name(), true);
  server->GetHealthCheckService()->SetServingStatus(v1::Ownership::service_full_name(), true);
  const std::string host = listen.substr(0, listen.rfind(':'));
  spdlog::info("serving {} on {}:{}", (*stack)->model->name, host, port);
  openai.SetReady(true);
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
  openai.SetReady(false);
  (*stack)->scheduler->StopAdmitting();
  const absl::Time drain_deadline = absl::Now() + grace;
  // Waits for in-flight RPCs; past the deadline gRPC cancels them, which
  // cancels their requests in the scheduler.
  server->Shutdown(absl::ToChronoTime(drain_deadline));
  // HTTP requests get the same grace; then Stop() cancels what still runs.
  while (openai.active() > 0 && absl::Now() < drain_deadline) absl::SleepFor(absl::Milliseconds(20));
  (*stack)->scheduler->Stop();
  if (http) http->Stop();
  if (metrics_http) metrics_http->Stop();
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
