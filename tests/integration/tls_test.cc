// Transport security end to end: tessera-server with --tls-cert/--tls-key
// (and --tls-client-ca for mTLS) against the C++ client and the CLI, with
// certificates made by the openssl command line for each run.
#include "absl/strings/str_cat.h"
#include "client/tessera_client.h"
#include "gtest/gtest.h"
#include "tests/support/fixtures.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto run = [](const std::vector<std::string>& argv) {
      testing::CommandResult r = testing::RunCommand(argv);
      if (r.exit_code != 0) {
        setup_error_ += absl::StrCat(argv[0], " ", argv[1], " failed: ", r.output, "\n");
      }
    };
    const auto p = [](const std::string& f) { return dir_->Join(f); };
    testing::WriteFileOrDie(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"),
         "-days", "2", "-subj", "/CN=tessera-test-ca"});
    for (const std::string who : {"server", "client"}) {
      run({"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", p(who + ".key"), "-out", p(who + ".csr"),
           "-subj", "/CN=" + who});
      run({"/usr/bin/openssl", "x509", "-req", "-in", p(who + ".csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
           "-CAcreateserial", "-out", p(who + ".pem"), "-days", "2", "-extfile", p("ext.cnf")});
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static TlsOptions ClientTls(bool with_cert) {
    TlsOptions t;
    t.enabled = true;
    t.ca_file = dir_->Join("ca.pem");
    if (with_cert) {
      t.cert_file = dir_->Join("client.pem");
      t.key_file = dir_->Join("client.key");
    }
    return t;
  }

  static testing::TempDir* dir_;
  static std::string setup_error_;
};
testing::TempDir* TlsTest::dir_ = nullptr;
std::string TlsTest::setup_error_;

TEST_F(TlsTest, ServerOverTlsServesTlsClientsOnly) {
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(), {"--tls-cert", dir_->Join("server.pem"), "--tls-key", dir_->Join("server.key")});
  ASSERT_NE(server, nullptr);
  auto tls = TesseraClient::Connect(server->address(), absl::Seconds(10), "", ClientTls(false));
  ASSERT_TRUE(tls.ok()) << tls.status() << "\n" << server->Log();
  v1::GenerateRequest r;
  for (int32_t id : testing::PromptIds(0)) r.mutable_token_ids()->add_ids(id);
  r.mutable_sampling()->set_max_new_tokens(4);
  r.mutable_stopping()->set_ignore_eos(true);
  auto g = (*tls)->Generate(r);
  ASSERT_TRUE(g.ok()) << g.status();
  std::vector<int32_t> want = testing::Greedy("base", 0);
  want.resize(4);
  EXPECT_EQ(std::vector<int32_t>(g->token_ids().begin(), g->token_ids().end()), want);
  // A plaintext client cannot talk to it.
  auto plain = TesseraClient::Connect(server->address(), absl::Seconds(2));
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kUnavailable);
  // The CLI with --tls --ca.
  testing::CommandResult cli = testing::RunCommand({testing::BinaryPath("client/tessera"), "info", "--server",
                                                    server->address(), "--tls", "--ca", dir_->Join("ca.pem")});
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("context length"), std::string::npos) << cli.output;
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(), {"--tls-cert", dir_->Join("server.pem"), "--tls-key", dir_->Join("server.key"),
                                     "--tls-client-ca", dir_->Join("ca.pem")});
  ASSERT_NE(server, nullptr);
  auto without = TesseraClient::Connect(server->address(), absl::Seconds(2), "", ClientTls(false));
  if (without.ok()) {
    // The handshake may complete lazily: the first call must fail then.
    EXPECT_FALSE((*without)->ServerInfo(absl::Seconds(5)).ok());
  }
  auto with = TesseraClient::Connect(server->address(), absl::Seconds(10), "", ClientTls(true));
  ASSERT_TRUE(with.ok()) << with.status() << "\n" << server->Log();
  EXPECT_TRUE((*with)->ServerInfo().ok());
}

TEST_F(TlsTest, BadTlsFlagsRefuseToStart) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--tls-cert", dir_->Join("server.pem")},
        std::vector<std::string>{"--tls-cert", dir_->Join("missing.pem"), "--tls-key", dir_->Join("server.key")},
        std::vector<std::string>{"--tls-client-ca", dir_->Join("ca.pem")}}) {
    std::vector<std::string> argv = {testing::BinaryPath("server/tessera-server"), "--model",
                                     testing::TinyLlamaModelDir(), "--insecure-no-auth", "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    testing::CommandResult r = testing::RunCommand(argv, absl::Seconds(60));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("cannot start"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace tessera
