#include "server/api/tenants.h"

#include "common/sha256.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

std::string Entry(const std::string& id, const std::string& role, const std::string& key) {
  return "{\"id\": \"" + id + "\", \"role\": \"" + role + "\", \"api_key_sha256\": \"" + Sha256Hex(key) +
         "\"}";
}

TEST(TenantDirectoryTest, AuthenticatesBearerKeysByTheirHash) {
  auto dir = TenantDirectory::FromJson(
      "{\"tenants\": [" + Entry("acme", "user", "k1") + ", " + Entry("ops", "admin", "k2") + "]}", "t.json");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto acme = (*dir)->Authenticate("Bearer k1");
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ(acme->id, "acme");
  EXPECT_FALSE(acme->admin());
  EXPECT_TRUE((*dir)->Authenticate("bearer k2")->admin());
  for (auto header :
       {std::optional<std::string_view>(), std::optional<std::string_view>("k1"),
        std::optional<std::string_view>("Bearer "), std::optional<std::string_view>("Bearer k3")}) {
    EXPECT_EQ((*dir)->Authenticate(header).status().code(), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_NE((*dir)->Authenticate(std::nullopt).status().message().find("authorization: Bearer KEY"),
            std::string::npos);
}

TEST(TenantDirectoryTest, QuotasDefaultAndParse) {
  auto dir =
      TenantDirectory::FromJson("{\"tenants\": [{\"id\": \"a\", \"api_key_sha256\": \"" + Sha256Hex("k") +
                                    "\", \"max_adapters\": 3, \"max_adapter_bytes\": 1000}]}",
                                "t.json");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto t = (*dir)->Authenticate("Bearer k");
  EXPECT_EQ(t->max_adapters, 3);
  EXPECT_EQ(t->max_adapter_bytes, 1000);
  EXPECT_EQ(t->role, TenantRole::kUser);
  // Out-of-range, fractional or negative quotas are refused, never converted
  // (a float out of int64 range was undefined behaviour: fuzzer reproducer
  // tests/fuzz/corpus/tenants/crash-quota-float-out-of-range).
  for (const char* bad : {"3.6e122", "1.5", "-1", "\"10\""}) {
    auto d = TenantDirectory::FromJson("{\"tenants\": [{\"id\": \"a\", \"api_key_sha256\": \"" + Sha256Hex("k") +
                                           "\", \"max_adapter_bytes\": " + bad + "}]}",
                                       "t.json");
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.status().message().find("quotas must be non-negative integers"), std::string::npos) << d.status();
  }
}

TEST(TenantDirectoryTest, RejectsMistakesWithTheirLocation) {
  const std::string h = Sha256Hex("k");
  struct Case {
    std::string json, message;
  };
  for (const Case& c : std::vector<Case>{
           {"not json", "t.json: not valid JSON"},
           {"{\"tenant\": []}", "expected {\"tenants\""},
           {"{\"tenants\": [{\"id\": \"a\"}]}", "tenants[0]: needs string fields"},
           {"{\"tenants\": [{\"id\": \"a/b\", \"api_key_sha256\": \"" + h + "\"}]}",
            "tenant id 'a/b' is not valid"},
           {"{\"tenants\": [{\"id\": \"a\", \"role\": \"root\", \"api_key_sha256\": \"" + h + "\"}]}",
            "role must be \"user\" or \"admin\""},
           {"{\"tenants\": [{\"id\": \"a\", \"api_key_sha256\": \"secret\"}]}", "64 hex digits"},
           {"{\"tenants\": [" + Entry("a", "user", "k") + ", " + Entry("a", "user", "j") + "]}",
            "appears twice"},
           {"{\"tenants\": [" + Entry("a", "user", "k") + ", " + Entry("b", "user", "k") + "]}",
            "same API key"},
       }) {
    auto dir = TenantDirectory::FromJson(c.json, "t.json");
    EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(dir.status().message().find(c.message), std::string::npos) << dir.status();
  }
  EXPECT_EQ(TenantDirectory::FromFile("/nonexistent/tenants.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TenantDirectoryTest, InsecureModeMakesEveryCallerTheLocalAdmin) {
  auto dir = TenantDirectory::Insecure();
  auto t = dir->Authenticate(std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->id, "local");
  EXPECT_TRUE(t->admin());
}

TEST(ValidateNameTest, AcceptsSafeNamesOnly) {
  for (const char* ok : {"a", "support-bot_v2.1", "A9"}) EXPECT_TRUE(ValidateName(ok, "name").ok()) << ok;
  for (const char* bad : {"", ".", "..", "a/b", "../x", "a b", "é"}) {
    EXPECT_EQ(ValidateName(bad, "name").code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateName(std::string(65, 'a'), "name").ok());
}

}  // namespace
}  // namespace tessera
