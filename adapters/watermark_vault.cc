#include "adapters/watermark_vault.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

constexpr char kPassportFile[] = "passport.safetensors";
constexpr char kRawFactorsFile[] = "raw_factors.safetensors";

absl::Status MakePrivateDir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return FsError(ec, absl::StrCat("cannot create ", path));
  ::chmod(path.c_str(), 0700);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<WatermarkVault>> WatermarkVault::Open(const std::string& dir,
                                                                     const ModelConfig& base) {
  TESSERA_RETURN_IF_ERROR(MakePrivateDir(dir));
  auto vault = std::unique_ptr<WatermarkVault>(new WatermarkVault(dir, base));
  std::error_code ec;
  fs::remove_all(dir + "/.staging", ec);
  for (const auto& owner : fs::directory_iterator(dir, ec)) {
    if (!owner.is_directory() || owner.path().filename().string()[0] == '.') continue;
    for (const auto& entry : fs::directory_iterator(owner.path(), ec)) {
      const std::string path = entry.path().string();
      absl::StatusOr<WatermarkCredentials> cred =
          LoadWatermarkCredentials(path + "/" + kPassportFile, path + "/" + kRawFactorsFile, base);
      if (!cred.ok()) {
        spdlog::warn("watermark vault: skipping {}: {}", path, std::string(cred.status().message()));
        continue;
      }
      MutexLock lock(&vault->mu_);
      vault->entries_.push_back({owner.path().filename().string(), entry.path().filename().string(),
                                 std::make_shared<const WatermarkCredentials>(*std::move(cred))});
    }
  }
  spdlog::info("watermark vault {}: {} credential(s)", dir, vault->All().size());
  return vault;
}

absl::StatusOr<std::shared_ptr<const WatermarkCredentials>> WatermarkVault::WriteAndParse(
    const std::string& path, std::string_view passport, std::string_view raw_factors) const {
  TESSERA_RETURN_IF_ERROR(MakePrivateDir(path));
  TESSERA_RETURN_IF_ERROR(WriteFileDurably(path + "/" + kPassportFile, passport, 0600));
  TESSERA_RETURN_IF_ERROR(WriteFileDurably(path + "/" + kRawFactorsFile, raw_factors, 0600));
  absl::StatusOr<WatermarkCredentials> cred =
      LoadWatermarkCredentials(path + "/" + kPassportFile, path + "/" + kRawFactorsFile, base_);
  if (!cred.ok()) {
    // Name the field the client sent, not the server's temporary path.
    std::string message(cred.status().message());
    for (const auto& [file, field] :
         {std::pair<std::string, std::string>{path + "/" + kPassportFile, "passport"},
          {path + "/" + kRawFactorsFile, "raw factors"}}) {
      for (size_t at; (at = message.find(file)) != std::string::npos;)
        message.replace(at, file.size(), field);
    }
    return absl::InvalidArgumentError(absl::StrCat("bad watermark credentials: ", message));
  }
  return std::make_shared<const WatermarkCredentials>(*std::move(cred));
}

absl::StatusOr<std::shared_ptr<const WatermarkCredentials>> WatermarkVault::ParseTransient(
    std::string_view passport, std::string_view raw_factors) const {
  // In memory: secrets sent with a request never touch the disk.
  absl::StatusOr<WatermarkCredentials> cred =
      ParseWatermarkCredentials(std::string(passport), std::string(raw_factors), base_);
  if (!cred.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bad watermark credentials: ", cred.status().message()));
  }
  return std::make_shared<const WatermarkCredentials>(*std::move(cred));
}

absl::StatusOr<VaultEntry> WatermarkVault::Register(
    const std::string& owner, const std::string& id, std::string_view passport, std::string_view raw_factors,
    const std::function<absl::Status(const WatermarkCredentials&)>& admit) {
  if (Find(owner, id).ok()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "watermark credential '", id, "' already exists for tenant '", owner, "'; choose another id"));
  }
  std::string staging;
  {
    MutexLock lock(&mu_);
    staging = absl::StrCat(dir_, "/.staging/register-", ::getpid(), "-", next_staging_++);
  }
  // Secret files never stay in staging: every way out removes them, unless
  // they were renamed into the vault.
  bool stored = false;
  absl::Cleanup remove_staging = [&] {
    std::error_code rm;
    if (!stored) fs::remove_all(staging, rm);
  };
  absl::StatusOr<std::shared_ptr<const WatermarkCredentials>> cred =
      WriteAndParse(staging, passport, raw_factors);
  std::error_code ec;
  if (!cred.ok()) return cred.status();
  const VerifyOptions options;
  if (const double fpr = (*cred)->FalsePositiveRate(options.threshold);
      fpr > options.max_false_positive_rate) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "these credentials cannot prove ownership: with rank %d over %d modules, an unrelated adapter "
        "reaches "
        "the %.2f threshold with probability %.2g (above %.0e); use a larger passport or cover more modules",
        (*cred)->rank, static_cast<int>((*cred)->modules.size()), options.threshold, fpr,
        options.max_false_positive_rate));
  }
  if (admit) TESSERA_RETURN_IF_ERROR(admit(**cred));
  MutexLock lock(&mu_);
  for (const VaultEntry& e : entries_) {
    if (e.owner == owner && e.id == id) {
      return absl::AlreadyExistsError(absl::StrCat("watermark credential '", id, "' already exists"));
    }
  }
  const std::string owner_dir = dir_ + "/" + owner;
  TESSERA_RETURN_IF_ERROR(MakePrivateDir(owner_dir));
  fs::rename(staging, owner_dir + "/" + id, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot store the credentials: ", ec.message()));
  stored = true;
  if (absl::Status s = FsyncDir(owner_dir); !s.ok())
    spdlog::warn("watermark vault: {}", std::string(s.message()));
  entries_.push_back({owner, id, *cred});
  spdlog::info("watermark vault: tenant {} registered credential {} ({} modules, rank {})", owner, id,
               (*cred)->modules.size(), (*cred)->rank);
  return entries_.back();
}

absl::StatusOr<VaultEntry> WatermarkVault::Find(const std::string& owner, const std::string& id) const {
  MutexLock lock(&mu_);
  for (const VaultEntry& e : entries_) {
    if (e.owner == owner && e.id == id) return e;
  }
  return absl::NotFoundError(absl::StrCat("no watermark credential '", id, "' is registered for tenant '",
                                          owner, "'; register it with `tessera watermark register`"));
}

std::vector<VaultEntry> WatermarkVault::All() const {
  MutexLock lock(&mu_);
  return entries_;
}

}  // namespace tessera
