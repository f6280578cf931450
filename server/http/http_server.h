// An HTTP/1.1 server (Debian's cpp-httplib) running on its own threads:
// binds HOST:PORT, serves the routes a caller installs, stops on request.
// Used for /metrics (--metrics-listen) and the OpenAI-compatible API
// (--http-listen).
//
// Thread safety: Start and Stop may be called from any thread; handlers run
// on the server's pool of `threads` threads (one request at a time each, so
// a streaming response holds its thread until it ends).
#ifndef TESSERA_SERVER_HTTP_HTTP_SERVER_H_
#define TESSERA_SERVER_HTTP_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace tessera {

struct HostPort {
  std::string host;
  int port = 0;
};

// "HOST:PORT" or "[IPV6]:PORT", port 0..65535; InvalidArgument naming
// `flag` otherwise.
absl::StatusOr<HostPort> ParseHostPort(const std::string& listen, const std::string& flag);

class HttpServer {
 public:
  // `routes` installs handlers on the server before it binds. Port 0 picks a
  // free port (see port()). Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen, const std::string& flag,
                                                           int threads,
                                                           const std::function<void(httplib::Server&)>& routes);
  ~HttpServer();  // Stop()
  // Stops accepting and waits for the handlers in progress.
  void Stop();
  int port() const { return port_; }
  // "http://HOST:PORT" with the bound port.
  const std::string& url() const { return url_; }

 private:
  struct Impl;
  HttpServer();
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::string url_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_HTTP_HTTP_SERVER_H_
