// The durable adapter store under --data-dir:
//
//   DIR/manifest.json        metadata of every acknowledged adapter
//   DIR/adapters/ID/         adapter_config.json, adapter_model.safetensors
//   DIR/staging/ID/          uploads in progress (wiped at Open)
//   DIR/quarantine/ID-.../   entries found broken, kept for inspection
//
// An upload is written into staging, fsync'ed, renamed into adapters/ and only
// then added to the manifest (written to a temporary file, fsync'ed and
// renamed), so a crash at any point leaves either the old or the new state.
// Open() quarantines what does not match the manifest (missing or truncated
// files, directories the manifest does not name) with a warning log and
// never fails because of one bad entry.
//
// Thread safety: all methods may be called from any thread.
#ifndef TESSERA_ADAPTERS_ADAPTER_STORE_H_
#define TESSERA_ADAPTERS_ADAPTER_STORE_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sha256.h"
#include "common/mutex.h"

namespace tessera {

inline constexpr char kAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kAdapterModelFile[] = "adapter_model.safetensors";

struct StoredAdapter {
  std::string id;     // directory name under adapters/; unique, never reused
  std::string owner;  // tenant id
  std::string name;   // unique per owner
  std::string kind;   // "lora", "seal", "road" or "diablo"
  std::string description;
  bool shared = false;
  std::string sha256;  // hex; of adapter_config.json then adapter_model.safetensors
  int64_t config_bytes = 0;
  int64_t model_bytes = 0;
  int64_t resident_bytes = 0;  // Adapter::parameter_bytes when loaded
  int32_t rank = 0;
  int64_t created_unix_ms = 0;
  // Set when the upload matched another tenant's registered watermark and
  // --on-watermark-match=flag stored it anyway: why, for admins.
  std::string watermark_flag;

  int64_t stored_bytes() const { return config_bytes + model_bytes; }
  std::string reference() const { return owner + "/" + name; }
};

class AdapterStore;

// The files of one upload being received. Destroying it without Commit
// removes everything it wrote.
class AdapterUpload {
 public:
  ~AdapterUpload();
  AdapterUpload(const AdapterUpload&) = delete;
  AdapterUpload& operator=(const AdapterUpload&) = delete;

  // Appends data to `file`, which must be kAdapterConfigFile, then
  // kAdapterModelFile: files come whole and in that order. InvalidArgument
  // for another name or order, ResourceExhausted past max_bytes in total.
  absl::Status Append(std::string_view file, std::string_view data);
  // Directory holding the files received so far (for validation).
  const std::string& dir() const { return dir_; }
  int64_t bytes() const { return config_bytes_ + model_bytes_; }
  bool has_config() const { return config_bytes_ > 0; }
  bool has_model() const { return model_bytes_ > 0; }
  // Hex sha256 of every byte appended so far, in order.
  std::string Sha256Hex() const;

 private:
  friend class AdapterStore;
  AdapterUpload(AdapterStore* store, std::string id, std::string dir, int64_t max_bytes);
  absl::Status CloseCurrent();  // fsyncs and closes the open file

  AdapterStore* store_;
  std::string id_;
  std::string dir_;
  int64_t max_bytes_;
  int fd_ = -1;
  std::string current_;  // file being written
  int64_t config_bytes_ = 0;
  int64_t model_bytes_ = 0;
  Sha256 sha_;
  bool committed_ = false;
};

// One owner's limits, checked by AdapterStore::Commit.
struct StoreQuota {
  int64_t max_adapters = std::numeric_limits<int64_t>::max();
  int64_t max_bytes = std::numeric_limits<int64_t>::max();
};

class AdapterStore {
 public:
  // Opens DIR, creating it if needed, and locks it (flock on DIR/.lock):
  // FailedPrecondition while another process has it open. Fails only when DIR is unusable (not
  // writable, manifest.json not JSON at all — then it is moved aside to
  // quarantine and an empty store starts; only an I/O error fails).
  static absl::StatusOr<std::unique_ptr<AdapterStore>> Open(const std::string& dir);
  ~AdapterStore();  // releases the directory lock

  // A new upload of at most max_bytes (both files).
  absl::StatusOr<std::unique_ptr<AdapterUpload>> BeginUpload(int64_t max_bytes);

  // Makes the upload durable and adds `meta` (owner, name, kind, description,
  // shared, resident_bytes, rank) to the manifest; fills id, sha256, sizes and
  // created_unix_ms. AlreadyExists when owner already has an adapter named
  // meta.name; FailedPrecondition when a file is missing.
  // With a quota, the owner's count and bytes after this commit are checked
  // under the store's lock, so racing uploads cannot overshoot it
  // (ResourceExhausted).
  absl::StatusOr<StoredAdapter> Commit(std::unique_ptr<AdapterUpload> upload, StoredAdapter meta,
                                       const StoreQuota& quota = StoreQuota());

  // Removes owner/name from the manifest, then its files. NotFound if absent.
  absl::Status Remove(const std::string& owner, const std::string& name);

  std::optional<StoredAdapter> Find(const std::string& owner, const std::string& name) const;
  std::optional<StoredAdapter> FindById(const std::string& id) const;
  // Every entry, sorted by reference.
  std::vector<StoredAdapter> List() const;
  // Count and stored bytes of owner's adapters (quotas).
  void Usage(const std::string& owner, int64_t* count, int64_t* bytes) const;

  // Directory holding the entry's two files.
  std::string PathOf(const StoredAdapter& entry) const;
  // Checks the entry's files against the manifest: kFull re-reads them and
  // checks sizes and sha256 (after_chunk(bytes) runs after each chunk read,
  // to pace a scrub); kSizes only their sizes (a stat, for every cache load).
  // On a mismatch the entry is quarantined (logged, removed from the
  // manifest) and DataLoss is returned.
  enum class VerifyMode { kSizes, kFull };
  absl::Status Verify(const StoredAdapter& entry, VerifyMode mode = VerifyMode::kFull,
                      const std::function<void(size_t)>& after_chunk = nullptr);

  const std::string& dir() const { return dir_; }
  // Entries quarantined since Open (including by Open itself).
  int64_t quarantined() const;

 private:
  friend class AdapterUpload;
  explicit AdapterStore(std::string dir) : dir_(std::move(dir)) {}
  int lock_fd_ = -1;  // flock on DIR/.lock: one server per store
  // ... implementation details (manifest I/O, quarantine) ...
  std::string AdaptersDir() const;
  std::string StagingDir() const;
  std::string QuarantineDir() const;
  std::string ManifestPath() const;
  // Open(): creates the directories, wipes staging/, reads the manifest and
  // quarantines whatever does not match it.
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes entries_ and next_id_ to manifest.json.tmp, fsyncs it, renames it
  // over manifest.json and fsyncs DIR.
  absl::Status WriteManifestLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves `path` (when not empty and present) to quarantine/<label>, adds
  // `entry`'s metadata there as stored_adapter.json when given, logs a
  // warning with `reason` and counts it. The caller drops the manifest entry.
  void QuarantineLocked(const std::string& path, const std::string& label, const StoredAdapter* entry,
                        const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A fresh entry id: zero-padded counter from next_id_ and a random suffix.
  std::string NewIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  mutable Mutex mu_;
  std::vector<StoredAdapter> entries_ ABSL_GUARDED_BY(mu_);
  int64_t quarantined_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_STORE_H_
