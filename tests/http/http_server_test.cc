#include "server/http/http_server.h"

#include <httplib.h>

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<HttpServer> StartHello(const std::string& listen, int* calls) {
  auto server = HttpServer::Start(listen, "--test-listen", 2, [calls](httplib::Server& s) {
    s.Get("/hello", [calls](const httplib::Request&, httplib::Response& res) {
      ++*calls;
      res.set_content("hi", "text/plain");
    });
  });
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(HttpServerTest, ServesRoutesUntilStopped) {
  int calls = 0;
  std::unique_ptr<HttpServer> server = StartHello("127.0.0.1:0", &calls);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);
  EXPECT_EQ(server->url(), "http://127.0.0.1:" + std::to_string(server->port()));
  httplib::Client client("127.0.0.1", server->port());
  client.set_connection_timeout(5);
  auto res = client.Get("/hello");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "hi");
  EXPECT_EQ(calls, 1);
  res = client.Get("/other");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  server->Stop();
  server->Stop();  // idempotent
  httplib::Client after("127.0.0.1", server->port());
  after.set_connection_timeout(1);
  EXPECT_FALSE(after.Get("/hello"));
}

TEST(HttpServerTest, StopRightAfterStartReturns) {
  int calls = 0;
  for (int i = 0; i < 5; ++i) {
    std::unique_ptr<HttpServer> server = StartHello("127.0.0.1:0", &calls);
    ASSERT_NE(server, nullptr);
    server->Stop();
  }
}

TEST(HttpServerTest, RejectsMalformedListenAddress) {
  for (const char* listen : {"nonsense", "", ":9090", "host:", "host:abc", "host:70000", "host:-1", "::1:9090",
                             "[::1]9090", "host:90 90", "host:+80", "host:000080000"}) {
    auto server = HttpServer::Start(listen, "--test-listen", 1, [](httplib::Server&) {});
    ASSERT_FALSE(server.ok()) << listen;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("--test-listen")) << listen;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("HOST:PORT")) << listen;
  }
  absl::StatusOr<HostPort> v6 = ParseHostPort("[::1]:8000", "--x");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8000);
}

TEST(HttpServerTest, PortInUseIsUnavailable) {
  int calls = 0;
  std::unique_ptr<HttpServer> first = StartHello("127.0.0.1:0", &calls);
  ASSERT_NE(first, nullptr);
  const std::string listen = "127.0.0.1:" + std::to_string(first->port());
  auto second = HttpServer::Start(listen, "--test-listen", 1, [](httplib::Server&) {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(listen));
}

}  // namespace
}  // namespace tessera
