// The Python client package (client/python, stubs generated at build time)
// against the real server: tests/python/client_test.py, with two tenants, a
// data dir and a registered SEAL credential.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fixtures.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

TEST(PythonClientTest, UnittestsPassAgainstTheServer) {
  testing::TempDir dir;
  testing::WriteFileOrDie(
      dir.Join("tenants.json"),
      absl::StrCat(R"({"tenants": [{"id": "acme", "role": "user", "api_key_sha256": ")", Sha256Hex("owner-key"),
                   R"("}, {"id": "other", "role": "user", "api_key_sha256": ")", Sha256Hex("other-key"), R"("}]})"));
  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir(),
                                              {"--data-dir", dir.Join("data"), "--tenants", dir.Join("tenants.json")});
  ASSERT_NE(server, nullptr);
  const std::string fixtures = std::string(TESSERA_FIXTURES_DIR) + "/tiny-llama";
  testing::CommandResult reg = testing::RunCommand(
      {testing::BinaryPath("client/tessera"), "watermark", "register", "seal-key", "--passport",
       fixtures + "/owner_secret/passport.safetensors", "--raw-factors",
       fixtures + "/owner_secret/original_lora.safetensors", "--server", server->address(), "--api-key", "owner-key"});
  ASSERT_EQ(reg.exit_code, 0) << reg.output;
  testing::CommandResult r = testing::RunCommand(
      {"/usr/bin/env", absl::StrCat("PYTHONPATH=", TESSERA_PYTHON_DIR), absl::StrCat("TESSERA_ADDR=", server->address()),
       absl::StrCat("TESSERA_FIXTURES=", fixtures), "/usr/bin/python3",
       std::string(TESSERA_SOURCE_DIR) + "/tests/python/client_test.py"},
      absl::Seconds(180));
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n" << server->Log();
  EXPECT_THAT(r.output, ::testing::HasSubstr("Ran 5 tests"));
  EXPECT_THAT(r.output, ::testing::HasSubstr("OK"));
}

}  // namespace
}  // namespace tessera
