// The private vault of SEAL watermark credentials under --data-dir:
//
//   DIR/OWNER/ID/passport.safetensors, DIR/OWNER/ID/raw_factors.safetensors
//
// Directories are created 0700 and files 0600 (owner-only), written to a
// staging name, fsync'ed and renamed. Credentials are validated against the
// base model before they are stored and kept parsed in memory; nothing here
// ever hands the files back out.
//
// Thread safety: all methods may be called from any thread.
#ifndef TESSERA_ADAPTERS_WATERMARK_VAULT_H_
#define TESSERA_ADAPTERS_WATERMARK_VAULT_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/watermark.h"
#include "model/model_config.h"
#include "common/mutex.h"

namespace tessera {

struct VaultEntry {
  std::string owner;
  std::string id;
  std::shared_ptr<const WatermarkCredentials> credentials;
};

class WatermarkVault {
 public:
  // Opens (creating, 0700) DIR and loads every stored credential; one that
  // no longer parses is logged and skipped, never fatal.
  static absl::StatusOr<std::unique_ptr<WatermarkVault>> Open(const std::string& dir,
                                                              const ModelConfig& base);

  // Validates and stores the two files' bytes as owner/id. AlreadyExists
  // when owner already has id; InvalidArgument for bad credentials.
  // `admit`, when set, may refuse valid credentials before they are stored.
  absl::StatusOr<VaultEntry> Register(
      const std::string& owner, const std::string& id, std::string_view passport, std::string_view raw_factors,
      const std::function<absl::Status(const WatermarkCredentials&)>& admit = nullptr);

  // Parses credentials sent with a request without storing them.
  absl::StatusOr<std::shared_ptr<const WatermarkCredentials>> ParseTransient(
      std::string_view passport, std::string_view raw_factors) const;

  // NotFound when owner has no credential id.
  absl::StatusOr<VaultEntry> Find(const std::string& owner, const std::string& id) const;
  std::vector<VaultEntry> All() const;

 private:
  WatermarkVault(std::string dir, const ModelConfig& base) : dir_(std::move(dir)), base_(base) {}
  // Writes both files 0600 into a fresh private directory `path` and parses them.
  absl::StatusOr<std::shared_ptr<const WatermarkCredentials>> WriteAndParse(
      const std::string& path, std::string_view passport, std::string_view raw_factors) const;

  const std::string dir_;
  const ModelConfig base_;
  mutable Mutex mu_;
  std::vector<VaultEntry> entries_ ABSL_GUARDED_BY(mu_);
  mutable uint64_t next_staging_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_WATERMARK_VAULT_H_
