#include "common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"

namespace tessera {

absl::Status ErrnoError(int err, const std::string& what) {
  absl::StatusCode code = err == 0 ? absl::StatusCode::kInternal : absl::ErrnoToStatusCode(err);
  const char* hint = "";
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      code = absl::StatusCode::kResourceExhausted;
      hint = "; free disk space on that file system and retry";
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = absl::StatusCode::kPermissionDenied;
      hint = "; make the directory writable by the server process";
      break;
    default:
      break;
  }
  return absl::Status(code, absl::StrCat(what, ": ", err == 0 ? "I/O error" : std::strerror(err), hint));
}

absl::Status FsError(const std::error_code& ec, const std::string& what) {
  return ErrnoError(ec.value() != 0 ? ec.value() : EIO, what);
}

absl::Status PwriteAll(int fd, std::string_view data, int64_t offset, const std::string& what) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, what);
    }
    data.remove_prefix(static_cast<size_t>(n));
    offset += n;
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open directory ", dir, " to fsync it"));
  absl::Status status;
  if (::fsync(fd) != 0) status = ErrnoError(errno, absl::StrCat("fsync of directory ", dir, " failed"));
  ::close(fd);
  return status;
}

absl::Status WriteFileDurably(const std::string& path, std::string_view content, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot create ", path));
  absl::Status status = PwriteAll(fd, content, 0, absl::StrCat("writing ", path, " failed"));
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError(errno, absl::StrCat("fsync of ", path, " failed"));
  if (::close(fd) != 0 && status.ok()) status = ErrnoError(errno, absl::StrCat("closing ", path, " failed"));
  return status;
}

absl::StatusOr<int64_t> ReadFileInChunks(const std::string& path,
                                         const std::function<void(std::string_view)>& consume) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", path));
  std::string buf(1 << 20, '\0');
  int64_t total = 0;
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoError(err, absl::StrCat("reading ", path, " failed"));
    }
    if (n == 0) break;
    consume(std::string_view(buf.data(), static_cast<size_t>(n)));
    total += n;
  }
  ::close(fd);
  return total;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::string out;
  absl::StatusOr<int64_t> n = ReadFileInChunks(path, [&out](std::string_view chunk) { out.append(chunk); });
  if (!n.ok()) return n.status();
  return out;
}

}  // namespace tessera
