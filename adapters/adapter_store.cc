#include "adapters/adapter_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "adapters/adapter.h"
#include "common/file_util.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kManifestVersion = 1;
constexpr char kManifestFile[] = "manifest.json";
constexpr char kQuarantineMetadataFile[] = "stored_adapter.json";

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string JoinPath(const std::string& a, const std::string& b) { return (fs::path(a) / b).string(); }

std::string FormatMiB(int64_t bytes) {
  constexpr int64_t kMiB = int64_t{1} << 20;
  if (bytes % kMiB == 0) return absl::StrCat(bytes / kMiB, " MiB");
  return absl::StrFormat("%.2f MiB", static_cast<double>(bytes) / static_cast<double>(kMiB));
}

// An id or directory name that is safe to join to a directory path.
bool IsPlainName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

// The counter at the start of an id ("000007-9f3a1c" -> 7); 0 when none.
uint64_t IdCounter(std::string_view name) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < name.size() && i < 18 && name[i] >= '0' && name[i] <= '9'; ++i) n = n * 10 + (name[i] - '0');
  return i == 0 ? 0 : n;
}

json ToJson(const StoredAdapter& e) {
  return json{{"id", e.id},
              {"owner", e.owner},
              {"name", e.name},
              {"kind", e.kind},
              {"description", e.description},
              {"shared", e.shared},
              {"sha256", e.sha256},
              {"config_bytes", e.config_bytes},
              {"model_bytes", e.model_bytes},
              {"resident_bytes", e.resident_bytes},
              {"rank", e.rank},
              {"created_unix_ms", e.created_unix_ms},
              {"watermark_flag", e.watermark_flag}};
}

// Parses one manifest entry; InvalidArgument saying which field is wrong.
absl::StatusOr<StoredAdapter> FromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("entry is not a JSON object");
  StoredAdapter e;
  auto get = [&j](const char* key, auto* out) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end()) return absl::InvalidArgumentError(absl::StrCat("field '", key, "' is missing"));
    try {
      it->get_to(*out);
    } catch (const json::exception&) {
      return absl::InvalidArgumentError(absl::StrCat("field '", key, "' has the wrong type"));
    }
    return absl::OkStatus();
  };
  TESSERA_RETURN_IF_ERROR(get("id", &e.id));
  TESSERA_RETURN_IF_ERROR(get("owner", &e.owner));
  TESSERA_RETURN_IF_ERROR(get("name", &e.name));
  TESSERA_RETURN_IF_ERROR(get("kind", &e.kind));
  TESSERA_RETURN_IF_ERROR(get("description", &e.description));
  TESSERA_RETURN_IF_ERROR(get("shared", &e.shared));
  TESSERA_RETURN_IF_ERROR(get("sha256", &e.sha256));
  TESSERA_RETURN_IF_ERROR(get("config_bytes", &e.config_bytes));
  TESSERA_RETURN_IF_ERROR(get("model_bytes", &e.model_bytes));
  TESSERA_RETURN_IF_ERROR(get("resident_bytes", &e.resident_bytes));
  TESSERA_RETURN_IF_ERROR(get("rank", &e.rank));
  TESSERA_RETURN_IF_ERROR(get("created_unix_ms", &e.created_unix_ms));
  e.watermark_flag = j.value("watermark_flag", std::string());  // optional: added after version 1
  if (!IsPlainName(e.id))
    return absl::InvalidArgumentError(absl::StrCat("id '", e.id, "' is not a plain name"));
  if (e.owner.empty() || e.name.empty()) return absl::InvalidArgumentError("owner or name is empty");
  if (e.config_bytes <= 0 || e.model_bytes <= 0)
    return absl::InvalidArgumentError("a file size is not positive");
  return e;
}

struct Problem {
  std::string slug;    // names the quarantine directory
  std::string reason;  // for the log / error message
};

// Checks that the entry's directory holds both files with the recorded sizes.
std::optional<Problem> CheckFiles(const std::string& entry_dir, const StoredAdapter& e) {
  std::error_code ec;
  if (!fs::is_directory(entry_dir, ec)) {
    return Problem{"missing", absl::StrCat("its directory ", entry_dir, " is missing")};
  }
  const std::pair<const char*, int64_t> files[] = {{kAdapterConfigFile, e.config_bytes},
                                                   {kAdapterModelFile, e.model_bytes}};
  for (const auto& [file, expected] : files) {
    const std::string path = JoinPath(entry_dir, file);
    if (!fs::is_regular_file(path, ec)) {
      return Problem{"missing-file", absl::StrCat(file, " is missing")};
    }
    const uintmax_t size = fs::file_size(path, ec);
    if (ec) return Problem{"unreadable", absl::StrCat("cannot stat ", file, ": ", ec.message())};
    if (static_cast<int64_t>(size) != expected) {
      return Problem{"size-mismatch",
                     absl::StrCat(file, " has ", size, " bytes but manifest.json records ", expected)};
    }
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------
// AdapterUpload

AdapterUpload::AdapterUpload(AdapterStore* store, std::string id, std::string dir, int64_t max_bytes)
    : store_(store), id_(std::move(id)), dir_(std::move(dir)), max_bytes_(max_bytes) {}

AdapterUpload::~AdapterUpload() {
  if (fd_ >= 0) ::close(fd_);
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (ec) spdlog::warn("adapter store: cannot remove abandoned upload {}: {}", dir_, ec.message());
}

absl::Status AdapterUpload::Append(std::string_view file_name, std::string_view data) {
  const absl::string_view file(file_name.data(), file_name.size());
  if (file != kAdapterConfigFile && file != kAdapterModelFile) {
    return absl::InvalidArgumentError(absl::StrCat("unknown adapter file '", Excerpt(file_name),
                                                   "': an upload has exactly two files, ", kAdapterConfigFile,
                                                   " then ", kAdapterModelFile));
  }
  if (committed_) {
    return absl::FailedPreconditionError("this adapter upload was already committed; start a new upload");
  }
  if (data.empty()) return absl::OkStatus();

  if (file != current_) {
    if (file == kAdapterConfigFile) {
      if (!current_.empty()) {  // the model file was started: the config is finished
        return absl::InvalidArgumentError(
            absl::StrCat(kAdapterConfigFile, " was sent after ", kAdapterModelFile, "; send all of ",
                         kAdapterConfigFile, " first, then all of ", kAdapterModelFile));
      }
    } else if (current_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(kAdapterModelFile, " was sent before ",
                                                     kAdapterConfigFile, "; send all of ", kAdapterConfigFile,
                                                     " first, then all of ", kAdapterModelFile));
    }
  }
  if (file == kAdapterConfigFile && static_cast<int64_t>(data.size()) > kMaxAdapterConfigBytes - config_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(kAdapterConfigFile, " is over the limit of ",
                                                   kMaxAdapterConfigBytes / 1024,
                                                   " KiB (real adapter configs are a few KiB)"));
  }
  if (static_cast<int64_t>(data.size()) > max_bytes_ - bytes()) {
    return absl::ResourceExhaustedError(absl::StrCat("the adapter upload is larger than the limit of ",
                                                     FormatMiB(max_bytes_), " for ", kAdapterConfigFile,
                                                     " and ", kAdapterModelFile,
                                                     " together; upload a smaller adapter (e.g. a lower LoRA "
                                                     "rank) or ask the operator to raise the limit"));
  }
  if (file != current_) {
    TESSERA_RETURN_IF_ERROR(CloseCurrent());  // the config file is complete
    current_ = std::string(file_name);
  }
  if (fd_ < 0) {
    const std::string path = JoinPath(dir_, current_);
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) return ErrnoError(errno, absl::StrCat("cannot create upload file ", path));
  }
  int64_t& written = file == kAdapterConfigFile ? config_bytes_ : model_bytes_;
  absl::Status status =
      PwriteAll(fd_, data, written, absl::StrCat("writing ", file, " into ", dir_, " failed"));
  if (!status.ok()) {
    // Drop a partial write so that the file keeps exactly `written` bytes.
    if (::ftruncate(fd_, static_cast<off_t>(written)) != 0) {
      spdlog::warn("adapter store: cannot truncate {}/{} after a failed write", dir_, file_name);
    }
    return status;
  }
  written += static_cast<int64_t>(data.size());
  sha_.Update(data);
  return absl::OkStatus();
}

absl::Status AdapterUpload::CloseCurrent() {
  if (fd_ < 0) return absl::OkStatus();
  const std::string path = JoinPath(dir_, current_);
  absl::Status status;
  if (::fsync(fd_) != 0) status = ErrnoError(errno, absl::StrCat("fsync of ", path, " failed"));
  if (::close(fd_) != 0 && status.ok()) status = ErrnoError(errno, absl::StrCat("closing ", path, " failed"));
  fd_ = -1;
  return status;
}

std::string AdapterUpload::Sha256Hex() const { return sha_.HexDigest(); }

// ---------------------------------------------------------------------------
// AdapterStore

std::string AdapterStore::AdaptersDir() const { return JoinPath(dir_, "adapters"); }
std::string AdapterStore::StagingDir() const { return JoinPath(dir_, "staging"); }
std::string AdapterStore::QuarantineDir() const { return JoinPath(dir_, "quarantine"); }
std::string AdapterStore::ManifestPath() const { return JoinPath(dir_, kManifestFile); }

absl::StatusOr<std::unique_ptr<AdapterStore>> AdapterStore::Open(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "the adapter store directory is empty; pass a directory with --data-dir");
  }
  std::unique_ptr<AdapterStore> store(new AdapterStore(dir));
  std::error_code ec;
  fs::create_directories(dir, ec);
  store->lock_fd_ = ::open((dir + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (store->lock_fd_ < 0) return ErrnoError(errno, absl::StrCat("cannot create ", dir, "/.lock"));
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the adapter store ", dir, " is in use by another process (", dir,
                     "/.lock is held); give each tessera-server its own --data-dir"));
  }
  {
    MutexLock lock(&store->mu_);
    TESSERA_RETURN_IF_ERROR(store->LoadLocked());
    spdlog::info("adapter store {}: {} adapters, {} quarantined at start", dir, store->entries_.size(),
                 store->quarantined_);
  }
  return store;
}

AdapterStore::~AdapterStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

absl::Status AdapterStore::LoadLocked() {
  std::error_code ec;
  for (const std::string& d : {dir_, AdaptersDir(), StagingDir(), QuarantineDir()}) {
    fs::create_directories(d, ec);
    if (ec || !fs::is_directory(d)) {
      if (!ec) ec = std::make_error_code(std::errc::not_a_directory);
      return FsError(ec, absl::StrCat("cannot create the adapter store directory ", d,
                                      " (check --data-dir and its permissions)"));
    }
    if (::access(d.c_str(), W_OK | X_OK) != 0) {
      return ErrnoError(errno, absl::StrCat("the adapter store directory ", d, " is not writable"));
    }
  }

  // Uploads in progress when the process stopped are abandoned.
  for (fs::directory_iterator it(StagingDir(), ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code rm;
    fs::remove_all(it->path(), rm);
    if (rm) {
      spdlog::warn("adapter store: cannot remove abandoned upload {}: {}", it->path().string(), rm.message());
    }
  }
  if (ec) return FsError(ec, absl::StrCat("cannot list ", StagingDir()));

  // Reads the manifest; `rewrite` says that it must be written back.
  const std::string manifest_path = ManifestPath();
  bool rewrite = false;
  std::vector<json> raw_entries;
  next_id_ = 1;
  struct stat st;
  if (::stat(manifest_path.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoError(errno, absl::StrCat("cannot read ", manifest_path));
    rewrite = true;  // a new store: write an empty manifest
  } else {
    TESSERA_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(manifest_path));
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    std::string problem;
    if (j.is_discarded()) {
      problem = "is not valid JSON";
    } else if (!j.is_object() || !j.contains("version") || !j["version"].is_number_integer()) {
      problem = "is not an adapter store manifest (no \"version\")";
    } else if (j["version"].get<int64_t>() > kManifestVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(manifest_path, " has format version ", j["version"].get<int64_t>(),
                       " but this server reads version ", kManifestVersion,
                       "; run a newer Tessera with this --data-dir or choose another --data-dir"));
    } else if (j["version"].get<int64_t>() != kManifestVersion) {
      problem = absl::StrCat("has unknown format version ", j["version"].get<int64_t>());
    } else if (!j.contains("adapters") || !j["adapters"].is_array()) {
      problem = "has no \"adapters\" list";
    }
    if (!problem.empty()) {
      const std::string dest = JoinPath(QuarantineDir(), absl::StrCat("manifest-", NowUnixMs(), ".json"));
      fs::rename(manifest_path, dest, ec);
      if (ec) return FsError(ec, absl::StrCat("cannot move the unreadable ", manifest_path, " to ", dest));
      spdlog::warn(
          "adapter store: {} {}; moved it to {} and starting with an empty store (adapter directories it "
          "named are quarantined too)",
          manifest_path, problem, dest);
      rewrite = true;
    } else {
      if (j.contains("next_id") && j["next_id"].is_number_unsigned()) {
        next_id_ = std::max<uint64_t>(next_id_, j["next_id"].get<uint64_t>());
      }
      raw_entries = j["adapters"].get<std::vector<json>>();
    }
  }

  // Reconciles the entries with the files.
  std::set<std::string> ids;
  std::set<std::pair<std::string, std::string>> references;
  for (const json& raw : raw_entries) {
    absl::StatusOr<StoredAdapter> parsed = FromJson(raw);
    rewrite = rewrite || !parsed.ok();
    if (!parsed.ok()) {
      // Its directory, if any, is quarantined below as one the manifest does not name.
      std::string text = raw.dump();
      if (text.size() > 300) text = text.substr(0, 300) + "...";
      spdlog::warn("adapter store: dropping a malformed entry of {} ({}): {}", manifest_path,
                   std::string(parsed.status().message()), text);
      continue;
    }
    StoredAdapter& e = *parsed;
    next_id_ = std::max(next_id_, IdCounter(e.id) + 1);
    if (ids.count(e.id)) {
      rewrite = true;
      QuarantineLocked("", absl::StrCat(e.id, "-duplicate-id"), &e,
                       "manifest.json lists its id twice; the first entry is kept");
      continue;
    }
    if (references.count({e.owner, e.name})) {
      rewrite = true;
      ids.insert(e.id);
      QuarantineLocked(PathOf(e), absl::StrCat(e.id, "-duplicate-name"), &e,
                       "manifest.json lists this owner/name twice; the first entry is kept");
      continue;
    }
    if (std::optional<Problem> problem = CheckFiles(PathOf(e), e)) {
      rewrite = true;
      ids.insert(e.id);
      QuarantineLocked(PathOf(e), absl::StrCat(e.id, "-", problem->slug), &e, problem->reason);
      continue;
    }
    ids.insert(e.id);
    references.insert({e.owner, e.name});
    entries_.push_back(std::move(e));
  }

  // Directories the manifest does not name: a crash between storing the files
  // and recording them, or leftovers of a failed delete.
  std::vector<fs::path> unlisted;
  for (fs::directory_iterator it(AdaptersDir(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    next_id_ = std::max(next_id_, IdCounter(name) + 1);
    if (!ids.count(name)) unlisted.push_back(it->path());
  }
  if (ec) return FsError(ec, absl::StrCat("cannot list ", AdaptersDir()));
  for (const fs::path& path : unlisted) {
    QuarantineLocked(path.string(), absl::StrCat(path.filename().string(), "-unlisted"), nullptr,
                     "manifest.json does not name it (an upload interrupted before it was recorded, or a "
                     "delete that could not remove the files)");
  }
  // Ids in quarantine are never reused either.
  for (fs::directory_iterator it(QuarantineDir(), ec), end; !ec && it != end; it.increment(ec)) {
    next_id_ = std::max(next_id_, IdCounter(it->path().filename().string()) + 1);
  }
  ec.clear();

  if (rewrite) TESSERA_RETURN_IF_ERROR(WriteManifestLocked());
  return absl::OkStatus();
}

absl::Status AdapterStore::WriteManifestLocked() const {
  json adapters = json::array();
  for (const StoredAdapter& e : entries_) adapters.push_back(ToJson(e));
  const json manifest{
      {"version", kManifestVersion}, {"next_id", next_id_}, {"adapters", std::move(adapters)}};
  const std::string path = ManifestPath();
  const std::string tmp = path + ".tmp";
  absl::Status status = WriteFileDurably(tmp, manifest.dump(2) + "\n");
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());  // best effort; may not exist
    return absl::Status(status.code(),
                        absl::StrCat("cannot write the adapter store manifest: ", status.message()));
  }
  status = FsyncDir(dir_);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("cannot write the adapter store manifest: ", status.message()));
  }
  return absl::OkStatus();
}

void AdapterStore::QuarantineLocked(const std::string& path, const std::string& label,
                                    const StoredAdapter* entry, const std::string& reason) {
  std::error_code ec;
  std::string dest = JoinPath(QuarantineDir(), label);
  for (int attempt = 0; fs::exists(fs::symlink_status(dest, ec)); ++attempt) {
    dest = JoinPath(QuarantineDir(),
                    absl::StrCat(label, "-", NowUnixMs(), attempt ? absl::StrCat("-", attempt) : ""));
  }
  std::string where;
  if (!path.empty() && fs::exists(fs::symlink_status(path, ec))) {
    fs::rename(path, dest, ec);
    if (ec) {
      where = absl::StrCat("; could not move ", path, " to ", dest, " (", ec.message(), "), left in place");
    } else {
      where = absl::StrCat("; moved ", path, " to ", dest);
      (void)FsyncDir(fs::path(path).parent_path().string());
    }
  }
  if (entry != nullptr) {
    // Keeps the manifest metadata next to the files for whoever inspects them.
    fs::create_directories(dest, ec);
    absl::Status status =
        ec ? FsError(ec, absl::StrCat("cannot create ", dest))
           : WriteFileDurably(JoinPath(dest, kQuarantineMetadataFile), ToJson(*entry).dump(2));
    if (status.ok()) {
      where += absl::StrCat("; its metadata is in ", JoinPath(dest, kQuarantineMetadataFile));
    } else {
      spdlog::warn("adapter store: cannot record the metadata of a quarantined adapter: {}",
                   std::string(status.message()));
    }
  }
  (void)FsyncDir(QuarantineDir());
  ++quarantined_;
  if (entry != nullptr) {
    spdlog::warn(
        "adapter store: quarantined adapter {} (id {}): {}{}; it was removed from the store, upload it "
        "again",
        entry->reference(), entry->id, reason, where);
  } else {
    spdlog::warn("adapter store: quarantined {}: {}{}", path, reason, where);
  }
}

std::string AdapterStore::NewIdLocked() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  while (true) {
    const uint64_t n = next_id_++;
    const std::string id = absl::StrFormat("%06d-%06x", n, rng() & 0xffffff);
    std::error_code ec;
    if (!fs::exists(JoinPath(AdaptersDir(), id), ec) && !fs::exists(JoinPath(StagingDir(), id), ec))
      return id;
  }
}

absl::StatusOr<std::unique_ptr<AdapterUpload>> AdapterStore::BeginUpload(int64_t max_bytes) {
  if (max_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the adapter size limit must be positive (got ", max_bytes, " bytes)"));
  }
  std::string id;
  {
    MutexLock lock(&mu_);
    id = NewIdLocked();
  }
  std::string dir = JoinPath(StagingDir(), id);
  std::error_code ec;
  fs::create_directory(dir, ec);
  if (ec) return FsError(ec, absl::StrCat("cannot create the upload directory ", dir));
  return std::unique_ptr<AdapterUpload>(new AdapterUpload(this, std::move(id), std::move(dir), max_bytes));
}

absl::StatusOr<StoredAdapter> AdapterStore::Commit(std::unique_ptr<AdapterUpload> upload,
                                                   StoredAdapter meta, const StoreQuota& quota) {
  if (upload == nullptr) return absl::InvalidArgumentError("there is no adapter upload to commit");
  if (upload->store_ != this) {
    return absl::InvalidArgumentError("the adapter upload was started on another adapter store");
  }
  if (upload->committed_) return absl::FailedPreconditionError("the adapter upload was already committed");
  if (meta.owner.empty() || meta.name.empty()) {
    return absl::InvalidArgumentError("an adapter needs an owner and a name to be stored");
  }
  const std::string reference = meta.reference();
  TESSERA_RETURN_IF_ERROR(upload->CloseCurrent());
  if (!upload->has_config()) {
    return absl::FailedPreconditionError(absl::StrCat("the upload of ", reference, " has no ",
                                                      kAdapterConfigFile, "; send ", kAdapterConfigFile,
                                                      ", then ", kAdapterModelFile));
  }
  if (!upload->has_model()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the upload of ", reference, " has no ", kAdapterModelFile, "; send it after ", kAdapterConfigFile));
  }
  const std::pair<const char*, int64_t> files[] = {{kAdapterConfigFile, upload->config_bytes_},
                                                   {kAdapterModelFile, upload->model_bytes_}};
  for (const auto& [file, expected] : files) {
    std::error_code ec;
    const uintmax_t size = fs::file_size(JoinPath(upload->dir_, file), ec);
    if (ec || static_cast<int64_t>(size) != expected) {
      return absl::InternalError(absl::StrCat("the uploaded ", file, " of ", reference,
                                              " does not have the bytes received; upload it again"));
    }
  }
  TESSERA_RETURN_IF_ERROR(FsyncDir(upload->dir_));

  MutexLock lock(&mu_);
  int64_t count = 0, bytes = 0;
  for (const StoredAdapter& e : entries_) {
    if (e.owner == meta.owner && e.name == meta.name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "adapter ", reference, " already exists; delete it first or upload under another name"));
    }
    if (e.owner == meta.owner) {
      ++count;
      bytes += e.stored_bytes();
    }
  }
  if (count + 1 > quota.max_adapters || bytes + upload->bytes() > quota.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", meta.owner, "' would exceed its quota (",
                                                     quota.max_adapters, " adapters, ", quota.max_bytes,
                                                     " bytes); delete an adapter first"));
  }
  const std::string dest = JoinPath(AdaptersDir(), upload->id_);
  if (::rename(upload->dir_.c_str(), dest.c_str()) != 0) {
    return ErrnoError(errno,
                      absl::StrCat("cannot move the upload of ", reference, " into the store (", dest, ")"));
  }
  absl::Status status = FsyncDir(AdaptersDir());
  if (status.ok()) {
    (void)FsyncDir(StagingDir());
    StoredAdapter entry = std::move(meta);
    entry.id = upload->id_;
    entry.sha256 = upload->Sha256Hex();
    entry.config_bytes = upload->config_bytes_;
    entry.model_bytes = upload->model_bytes_;
    entry.created_unix_ms = NowUnixMs();
    entries_.push_back(entry);
    status = WriteManifestLocked();
    if (status.ok()) {
      upload->committed_ = true;
      spdlog::info("adapter store: stored {} (id {}, {} bytes)", reference, entry.id, entry.stored_bytes());
      return entry;
    }
    entries_.pop_back();
    // The rename of the manifest may have happened before the failure.
    if (!WriteManifestLocked().ok()) {
      spdlog::warn("adapter store: cannot restore manifest.json after a failed commit of {}", reference);
    }
  }
  // Nothing half-committed: the files leave adapters/ again.
  std::error_code ec;
  fs::rename(dest, upload->dir_, ec);
  if (ec) fs::remove_all(dest, ec);
  if (ec) spdlog::warn("adapter store: cannot remove {} after a failed commit: {}", dest, ec.message());
  (void)FsyncDir(AdaptersDir());
  return absl::Status(status.code(),
                      absl::StrCat("adapter ", reference, " was not stored: ", status.message()));
}

absl::Status AdapterStore::Remove(const std::string& owner, const std::string& name) {
  MutexLock lock(&mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const StoredAdapter& e) { return e.owner == owner && e.name == name; });
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("adapter ", owner, "/", name,
                                            " does not exist; list the adapters to see the stored names"));
  }
  const size_t index = static_cast<size_t>(it - entries_.begin());
  StoredAdapter removed = std::move(*it);
  entries_.erase(it);
  if (absl::Status status = WriteManifestLocked(); !status.ok()) {
    entries_.insert(entries_.begin() + static_cast<std::ptrdiff_t>(index), std::move(removed));
    return absl::Status(status.code(),
                        absl::StrCat("adapter ", owner, "/", name, " was not deleted: ", status.message()));
  }
  std::error_code ec;
  const std::string path = PathOf(removed);
  fs::remove_all(path, ec);
  if (ec) {
    spdlog::warn(
        "adapter store: deleted {} but cannot remove its files {}: {}; they are quarantined at the next "
        "start",
        removed.reference(), path, ec.message());
  }
  (void)FsyncDir(AdaptersDir());
  spdlog::info("adapter store: deleted {} (id {})", removed.reference(), removed.id);
  return absl::OkStatus();
}

std::optional<StoredAdapter> AdapterStore::Find(const std::string& owner, const std::string& name) const {
  MutexLock lock(&mu_);
  for (const StoredAdapter& e : entries_) {
    if (e.owner == owner && e.name == name) return e;
  }
  return std::nullopt;
}

std::optional<StoredAdapter> AdapterStore::FindById(const std::string& id) const {
  MutexLock lock(&mu_);
  for (const StoredAdapter& e : entries_) {
    if (e.id == id) return e;
  }
  return std::nullopt;
}

std::vector<StoredAdapter> AdapterStore::List() const {
  std::vector<StoredAdapter> out;
  {
    MutexLock lock(&mu_);
    out = entries_;
  }
  std::sort(out.begin(), out.end(), [](const StoredAdapter& a, const StoredAdapter& b) {
    return std::tie(a.owner, a.name) < std::tie(b.owner, b.name);
  });
  return out;
}

void AdapterStore::Usage(const std::string& owner, int64_t* count, int64_t* bytes) const {
  int64_t n = 0;
  int64_t total = 0;
  {
    MutexLock lock(&mu_);
    for (const StoredAdapter& e : entries_) {
      if (e.owner != owner) continue;
      ++n;
      total += e.stored_bytes();
    }
  }
  if (count != nullptr) *count = n;
  if (bytes != nullptr) *bytes = total;
}

std::string AdapterStore::PathOf(const StoredAdapter& entry) const {
  return JoinPath(AdaptersDir(), entry.id);
}

absl::Status AdapterStore::Verify(const StoredAdapter& entry, VerifyMode mode,
                                  const std::function<void(size_t)>& after_chunk) {
  StoredAdapter record;
  {
    MutexLock lock(&mu_);
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [&](const StoredAdapter& e) { return e.id == entry.id; });
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("adapter ", entry.reference(), " is no longer in the store"));
    }
    record = *it;
  }
  // Hashing may take a while: done without the lock.
  const std::string path = PathOf(record);
  std::optional<Problem> problem;
  Sha256 sha;
  const std::pair<const char*, int64_t> files[] = {{kAdapterConfigFile, record.config_bytes},
                                                   {kAdapterModelFile, record.model_bytes}};
  for (const auto& [file, expected] : files) {
    absl::StatusOr<int64_t> size;
    if (mode == VerifyMode::kSizes) {
      std::error_code ec;
      const std::string file_path = JoinPath(path, file);
      const uintmax_t n = std::filesystem::file_size(file_path, ec);
      if (ec) {
        size = ec == std::errc::no_such_file_or_directory
                   ? absl::NotFoundError(file_path)
                   : absl::UnavailableError(absl::StrCat(file_path, ": ", ec.message()));
      } else {
        size = static_cast<int64_t>(n);
      }
    } else {
      size = HashFileInto(JoinPath(path, file), &sha, after_chunk);
    }
    if (!size.ok()) {
      if (!absl::IsNotFound(size.status())) {
        return absl::Status(size.status().code(), absl::StrCat("cannot verify adapter ", record.reference(),
                                                               ": ", size.status().message()));
      }
      problem = Problem{"missing-file", absl::StrCat(file, " is missing")};
      break;
    }
    if (*size != expected) {
      problem = Problem{"size-mismatch",
                        absl::StrCat(file, " has ", *size, " bytes but manifest.json records ", expected)};
      break;
    }
  }
  if (!problem && mode == VerifyMode::kSizes) return absl::OkStatus();
  if (!problem) {
    const std::string actual = sha.HexDigest();
    if (actual == record.sha256) return absl::OkStatus();
    problem = Problem{"sha256-mismatch", absl::StrCat("its files hash to sha256 ", actual,
                                                      " but manifest.json records ", record.sha256)};
  }

  MutexLock lock(&mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const StoredAdapter& e) { return e.id == record.id; });
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("adapter ", record.reference(), " is no longer in the store"));
  }
  const size_t index = static_cast<size_t>(it - entries_.begin());
  entries_.erase(it);
  if (absl::Status status = WriteManifestLocked(); !status.ok()) {
    entries_.insert(entries_.begin() + static_cast<std::ptrdiff_t>(index), record);
    return absl::DataLossError(absl::StrCat(
        "adapter ", record.reference(), " is corrupt on disk (", problem->reason,
        ") and could not be quarantined: ", status.message(), "; delete it and upload it again"));
  }
  QuarantineLocked(path, absl::StrCat(record.id, "-", problem->slug), &record, problem->reason);
  return absl::DataLossError(
      absl::StrCat("adapter ", record.reference(), " is corrupt on disk (", problem->reason,
                   "); it was quarantined and removed from the store, upload it again"));
}

int64_t AdapterStore::quarantined() const {
  MutexLock lock(&mu_);
  return quarantined_;
}

}  // namespace tessera
