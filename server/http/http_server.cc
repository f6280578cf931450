#include "server/http/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/mutex.h"

namespace tessera {

absl::StatusOr<HostPort> ParseHostPort(const std::string& listen, const std::string& flag) {
  const auto malformed = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", flag, " address '", listen, "': expected HOST:PORT, e.g. 127.0.0.1:8000"));
  };
  HostPort hp;
  std::string port_text;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') return malformed();
    hp.host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return malformed();
    hp.host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) return malformed();  // bare IPv6 needs brackets
  }
  if (hp.host.empty() || port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos || !absl::SimpleAtoi(port_text, &hp.port) ||
      hp.port > 65535) {
    return malformed();
  }
  return hp;
}

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> thread_done{false};
  Mutex stop_mu;
};

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen, const std::string& flag,
                                                              int threads,
                                                              const std::function<void(httplib::Server&)>& routes) {
  absl::StatusOr<HostPort> hp = ParseHostPort(listen, flag);
  if (!hp.ok()) return hp.status();
  if (threads < 1) return absl::InvalidArgumentError(absl::StrCat(flag, ": the server needs at least one thread"));
  std::unique_ptr<HttpServer> server(new HttpServer());
  Impl& impl = *server->impl_;
  impl.server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // httplib's default sets SO_REUSEPORT, which lets a second process bind the
  // same port and silently share it; SO_REUSEADDR alone only skips TIME_WAIT.
  impl.server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  routes(impl.server);
  int port = hp->port;
  if (port == 0) {
    port = impl.server.bind_to_any_port(hp->host);
  } else if (!impl.server.bind_to_port(hp->host, port)) {
    port = -1;
  }
  if (port < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind ", flag, " ", listen, " (address in use or not available on this host)"));
  }
  server->port_ = port;
  const bool v6 = hp->host.find(':') != std::string::npos;
  server->url_ = absl::StrCat("http://", v6 ? "[" : "", hp->host, v6 ? "]" : "", ":", port);
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
    return absl::UnavailableError(absl::StrCat(flag, " ", listen, ": the server stopped right after it started"));
  }
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  MutexLock lock(&impl_->stop_mu);
  if (!impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

}  // namespace tessera
