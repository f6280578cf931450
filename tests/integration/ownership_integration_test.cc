// SEAL ownership end to end: the real server with tenants and a data dir,
// the real client and CLI, the fixture SEAL adapter and its owner secret.
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "client/tessera_client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "model/safetensors.h"
#include "tests/support/fixtures.h"
#include "tests/support/prometheus.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string Fixture(const std::string& rel) { return testing::TinyLlamaDir() + "/" + rel; }
const std::string kPassport = Fixture("owner_secret/passport.safetensors");
const std::string kRawFactors = Fixture("owner_secret/original_lora.safetensors");

v1::UploadMetadata Meta(const std::string& name) {
  v1::UploadMetadata m;
  m.set_name(name);
  return m;
}

double Metric(const testing::ServerProcess& server, const std::string& name,
              const std::map<std::string, std::string>& labels) {
  httplib::Client http("127.0.0.1", server.metrics_port());
  auto res = http.Get("/metrics");
  if (!res) return -1;
  auto parsed = testing::ParsePrometheusText(res->body);
  return parsed.ok() ? testing::SumSeries(*parsed, name, labels) : -1;
}

// The SEAL fixture re-factorised with M = P·D (a random permutation times a
// random diagonal): B'' = B'·M, A'' = M⁻¹·A'. ΔW is unchanged.
void WriteRefactoredSeal(const std::string& dir) {
  fs::create_directories(dir);
  fs::copy_file(Fixture("adapters/seal/adapter_config.json"), dir + "/adapter_config.json");
  auto file = SafetensorsFile::Open(Fixture("adapters/seal/adapter_model.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  const int r = 8;
  const int perm[r] = {3, 7, 0, 5, 1, 6, 2, 4};
  const float scale[r] = {2.0f, 0.5f, 1.5f, 3.0f, 0.25f, 1.25f, 4.0f, 0.75f};
  std::vector<TensorToWrite> out;
  for (const auto& [name, view] : (*file)->tensors()) {
    std::vector<float> v = view.ToFloat(), w(v.size());
    const bool is_b = name.find("lora_B") != std::string::npos;
    if (is_b) {  // [out, r]: column perm[j] scaled, moved to j
      const int64_t rows = view.shape[0];
      for (int64_t o = 0; o < rows; ++o) {
        for (int j = 0; j < r; ++j) w[o * r + j] = v[o * r + perm[j]] * scale[j];
      }
    } else {  // [r, in]: row j = row perm[j] / scale[j]
      const int64_t in = view.shape[1];
      for (int j = 0; j < r; ++j) {
        for (int64_t c = 0; c < in; ++c) w[j * in + c] = v[perm[j] * in + c] / scale[j];
      }
    }
    TensorToWrite t;
    t.name = name;
    t.shape = view.shape;
    t.data.resize(w.size() * sizeof(float));
    std::memcpy(t.data.data(), w.data(), t.data.size());
    out.push_back(std::move(t));
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/adapter_model.safetensors", out).ok());
}

class OwnershipTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& on_match) {
    server_ = testing::ServerProcess::Start(testing::TinyLlamaModelDir(),
                                            {"--data-dir", dir_.Join("data"), "--tenants",
                                             dir_.Join("tenants.json"), "--on-watermark-match", on_match});
    ASSERT_NE(server_, nullptr);
    owner_ = *TesseraClient::Connect(server_->address(), absl::Seconds(10), "owner-key");
    thief_ = *TesseraClient::Connect(server_->address(), absl::Seconds(10), "thief-key");
  }
  void SetUp() override {
    testing::WriteFileOrDie(
        dir_.Join("tenants.json"),
        absl::StrCat(R"({"tenants": [{"id": "acme", "role": "user", "api_key_sha256": ")",
                     Sha256Hex("owner-key"), R"("}, {"id": "mallory", "role": "user", "api_key_sha256": ")",
                     Sha256Hex("thief-key"), R"("}]})"));
  }
  testing::CommandResult Cli(std::vector<std::string> args, const std::string& key) {
    std::vector<std::string> argv = {testing::BinaryPath("client/tessera")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--server", server_->address(), "--api-key", key});
    return testing::RunCommand(argv);
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<TesseraClient> owner_, thief_;
};

TEST_F(OwnershipTest, OwnerProvesOwnershipAndTheftIsRejected) {
  StartServer("reject");
  ASSERT_TRUE(owner_->UploadAdapter(Fixture("adapters/seal"), Meta("seal-bot")).ok());
  ASSERT_TRUE(owner_->UploadAdapter(Fixture("adapters/lora"), Meta("plain")).ok());

  auto reg = Cli(
      {"watermark", "register", "seal-key", "--passport", kPassport, "--raw-factors", kRawFactors, "--json"},
      "owner-key");
  ASSERT_EQ(reg.exit_code, 0) << reg.output;
  EXPECT_EQ(json::parse(reg.output)["modules"], 14);

  // The vault is private to the server's user.
  const std::string vault = dir_.Join("data") + "/vault/acme/seal-key";
  struct stat st;
  ASSERT_EQ(::stat(vault.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((vault + "/passport.safetensors").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto v = Cli({"watermark", "verify", "--adapter", "seal-bot", "--credential", "seal-key", "--json"},
               "owner-key");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  json j = json::parse(v.output);
  EXPECT_EQ(j["verdict"], "owned");
  EXPECT_GT(j["score"].get<double>(), 0.99);
  EXPECT_LE(j["false_positive_rate"].get<double>(), 1e-6);
  ASSERT_EQ(j["layers"].size(), 14u);
  EXPECT_GT(j["layers"][0]["pearson"].get<double>(), 0.99);
  EXPECT_EQ(j["layers"][0]["sign_agreement"].get<double>(), 1.0);
  EXPECT_GT(j["layers"][0]["psnr_db"].get<double>(), 40);

  // With the files instead of a registered id; and an unrelated adapter.
  v = Cli({"watermark", "verify", "--adapter", "seal-bot", "--passport", kPassport, "--raw-factors",
           kRawFactors, "--json"},
          "owner-key");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(json::parse(v.output)["verdict"], "owned");
  v = Cli({"watermark", "verify", "--adapter", "plain", "--credential", "seal-key", "--json"}, "owner-key");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(json::parse(v.output)["verdict"], "not_owned");

  // Another tenant uploads the SEAL adapter, then a re-factorised copy.
  WriteRefactoredSeal(dir_.Join("refactored"));
  for (const std::string& src : {Fixture("adapters/seal"), dir_.Join("refactored")}) {
    auto stolen = thief_->UploadAdapter(src, Meta("my-own-work"));
    EXPECT_EQ(stolen.status().code(), absl::StatusCode::kPermissionDenied) << stolen.status();
    EXPECT_EQ(stolen.status().message().find("acme"), std::string::npos)
        << "names the owner: " << stolen.status();
    EXPECT_NE(stolen.status().message().find("watermark"), std::string::npos) << stolen.status();
  }
  EXPECT_EQ(thief_->ListAdapters()->adapters_size(), 0);
  EXPECT_NE(
      server_->Log().find("AUDIT watermark-match action=reject uploader=mallory adapter=mallory/my-own-work "
                          "credential=acme/seal-key"),
      std::string::npos)
      << server_->Log();
  EXPECT_EQ(Metric(*server_, "tessera_watermark_matches_total", {{"action", "reject"}}), 2);
  // The thief's honest upload goes through.
  EXPECT_TRUE(thief_->UploadAdapter(Fixture("adapters/lora2"), Meta("honest")).ok());

  // Access: the thief can neither verify acme's private adapter nor use its
  // credentials.
  v1::VerifyOwnershipRequest req;
  req.set_adapter_id("acme/seal-bot");
  req.set_credential_id("acme/seal-key");
  EXPECT_EQ(thief_->VerifyOwnership(req).status().code(), absl::StatusCode::kPermissionDenied);
  req.set_credential_id("seal-key");
  EXPECT_EQ(thief_->VerifyOwnership(req).status().code(), absl::StatusCode::kNotFound);

  // Malformed credentials get clear errors that do not leak server paths.
  v1::WatermarkCredentialFiles bad;
  bad.set_passport_safetensors("not a safetensors file");
  bad.set_raw_factors_safetensors(testing::ReadFileOrDie(kRawFactors));
  auto r = owner_->RegisterWatermark("broken", bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("bad watermark credentials: passport"), std::string::npos)
      << r.status();
  EXPECT_EQ(r.status().message().find(dir_.path()), std::string::npos) << r.status();
  auto dup =
      owner_->RegisterWatermark("seal-key", *TesseraClient::ReadCredentialFiles(kPassport, kRawFactors));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists) << dup.status();
  EXPECT_EQ(Cli({"watermark", "verify", "--adapter", "seal-bot"}, "owner-key").exit_code, 2);
}

TEST_F(OwnershipTest, FlagModeStoresTheUploadMarkedAndTheVaultSurvivesARestart) {
  StartServer("reject");
  ASSERT_TRUE(
      owner_->RegisterWatermark("seal-key", *TesseraClient::ReadCredentialFiles(kPassport, kRawFactors))
          .ok());
  server_.reset();
  StartServer("flag");  // same data dir: the credential is back
  auto stolen = thief_->UploadAdapter(Fixture("adapters/seal"), Meta("copy"));
  ASSERT_TRUE(stolen.ok()) << stolen.status();
  EXPECT_NE(stolen->watermark_flag().find("matches a registered watermark"), std::string::npos);
  EXPECT_NE(server_->Log().find("AUDIT watermark-match action=flag uploader=mallory"), std::string::npos)
      << server_->Log();
  EXPECT_EQ(Metric(*server_, "tessera_watermark_matches_total", {{"action", "flag"}}), 1);
  // The owner's own upload of its adapter is not screened against itself.
  auto own = owner_->UploadAdapter(Fixture("adapters/seal"), Meta("mine"));
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(own->watermark_flag().empty());
}

}  // namespace
}  // namespace tessera
